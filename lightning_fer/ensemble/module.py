"""``EnsembleModule``: frozen members on every view, combined by a swappable strategy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import nn

from lightning_fer.data.regions import REGIONS
from lightning_fer.ensemble.functional import exporting
from lightning_fer.ensemble.strategies import EnsembleStrategy, HardVote
from lightning_fer.models.classifier import FERClassifier
from lightning_fer.models.evaluation import EvaluationMixin

log = logging.getLogger(__name__)


class DataLeakError(ValueError):
    """A learning strategy would be fitted on samples a member was trained on."""


def check_held_out(member_prints: Sequence[dict | None], data_print: dict, names: Sequence[str]) -> None:
    """Raise unless the data's validation split is held out from every member's training.

    A member fitted on fold ``k`` of a split (same source, number of folds and seed) never saw
    that split's fold ``k``; any other combination may overlap, and is refused.
    """
    problems = []
    for name, fp in zip(names, member_prints):
        if not fp:
            problems.append(f"{name}: no data fingerprint in its checkpoint, so its training data cannot be checked")
            continue
        for key in ("source", "num_folds", "seed", "fold"):
            if fp.get(key) != data_print.get(key):
                problems.append(
                    f"{name}: trained with {key}={fp.get(key)!r}, but the held-out data has {key}={data_print.get(key)!r}"
                )
                break
        else:
            if fp.get("train_hash") != data_print.get("train_hash"):
                problems.append(f"{name}: its training images differ from this split's (the folds file changed?)")
    if problems:
        raise DataLeakError(
            "refusing to fit the strategy: its held-out predictions may include samples a member was trained on\n  "
            + "\n  ".join(problems)
            + "\nfit it on the validation fold each member was held out from (same source, num_folds, seed and fold)"
        )


def _load_member(path: Path) -> FERClassifier:
    """Load a member checkpoint (weights only). LightningCLI instantiates the ensemble inside a
    context that hands its own hyperparameters to every ``save_hyperparameters()`` call; a member
    built within it would take the ensemble's, so that context is cleared here."""
    try:
        from lightning.pytorch.core.mixins import hparams_mixin

        token = hparams_mixin._given_hyperparameters.set(None)
    except (ImportError, AttributeError):  # pragma: no cover - other Lightning versions
        hparams_mixin, token = None, None
    try:
        return FERClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    finally:
        if token is not None:
            hparams_mixin._given_hyperparameters.reset(token)


class EnsembleModule(EvaluationMixin, L.LightningModule):
    """Every member on every view, combined by a strategy.

    Members are ``FERClassifier`` checkpoints (or modules) of any mix of backbones; they are
    frozen, in eval mode, and move with this module's device and precision. A member trained
    on one region (a region expert) is bound to that region; a member trained on ``face`` sees
    every view in ``views``, so that full-face models voting over all regions and region experts
    can be mixed. Each member runs once per batch on all its views together.

    Strategies that learn are fitted on the data module's validation split (the held-out fold)
    at the start of validate, test or predict, after the members' data fingerprints are checked;
    ``strategy_fit_split`` chooses another split.

    Args:
        members: checkpoint paths or ``FERClassifier`` modules.
        strategy: how to combine: ``HardVote``, ``SoftVote``, ``Stacking`` or a subclass of
            :class:`EnsembleStrategy` given by ``class_path``.
        views: regions the ensemble looks at; must equal the data module's ``views``.
        bind_experts: bind members trained on one region to it (``False``: every member sees
            every view).
        num_classes: linked from the data by the CLI; checked against the members.
        class_names: linked from the data by the CLI; checked against the members.
        image_size: linked from the data by the CLI.
        check_leaks: refuse to fit a learning strategy on data a member was trained on.
        strategy_fit_split: the split learning strategies are fitted on.
        member_batch: split each member's ``B x views`` images into calls of at most this many
            (results unchanged), to cap the memory of big batches of many views. ``None``: one
            call per member, which was as fast or faster in ``benchmarks/ensemble.py``.

    Example:
        >>> from lightning_fer import FERClassifier
        >>> members = [FERClassifier("resnet18", image_size=64), FERClassifier("sppnet", image_size=64)]
        >>> ens = EnsembleModule(members, HardVote(), views=["face", "mouth"])
        >>> ens(torch.randn(2, 2, 3, 64, 64)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        members: list[str] | list[nn.Module],
        strategy: EnsembleStrategy | None = None,
        views: list[str] = ["face"],  # noqa: B006
        bind_experts: bool = True,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        image_size: int | None = None,
        check_leaks: bool = True,
        strategy_fit_split: str = "val",
        member_batch: int | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        # Paths are worth recording; modules and the strategy object are not (their weights are
        # in the state dict, their settings in the CLI's config file).
        self.save_hyperparameters(ignore=["strategy"] if isinstance(members[0], (str, Path)) else ["strategy", "members"])
        unknown = [v for v in views if v not in REGIONS]
        if unknown:
            raise ValueError(f"unknown view(s) {unknown}; choose from {list(REGIONS)}")
        self.views = list(views)
        if member_batch is not None and member_batch < 1:
            raise ValueError(f"member_batch must be a positive number of images or None, got {member_batch}")
        self.member_batch = member_batch
        self.members = nn.ModuleList()
        self.member_names: list[str] = []
        for i, m in enumerate(members):
            if isinstance(m, (str, Path)):
                path = Path(m).expanduser()
                if not path.is_file():
                    raise FileNotFoundError(f"ensemble member {i}: checkpoint {path} does not exist")
                model = _load_member(path)
                self.member_names.append(f"{model.hparams.backbone}[{model.region}]@{path.name}")
            elif isinstance(m, FERClassifier):
                model = m
                self.member_names.append(f"{model.hparams.backbone}[{model.region}]#{i}")
            else:
                raise TypeError(f"ensemble member {i}: expected a checkpoint path or FERClassifier, got {type(m).__name__}")
            model.eval()
            model.requires_grad_(False)
            self.members.append(model)
        names = [list(m.class_names) for m in self.members]
        if any(n != names[0] for n in names):
            listing = "\n  ".join(f"{mn}: {n}" for mn, n in zip(self.member_names, names))
            raise ValueError(f"ensemble members disagree on class names:\n  {listing}")
        self.class_names = names[0]
        if class_names is not None and list(class_names) != self.class_names:
            raise ValueError(f"the data's classes {list(class_names)} differ from the members' {self.class_names}")
        if num_classes is not None and num_classes != len(self.class_names):
            raise ValueError(f"the data has {num_classes} classes, the members {len(self.class_names)}")
        # Which views each member sees: [M, V].
        mask = torch.ones(len(self.members), len(self.views), dtype=torch.bool)
        for i, model in enumerate(self.members):
            region = model.region
            if bind_experts and region != "face":
                if region not in self.views:
                    raise ValueError(
                        f"member {self.member_names[i]} is an expert on {region!r}, which is not among views {self.views}"
                    )
                mask[i] = torch.tensor([v == region for v in self.views])
        self.register_buffer("mask", mask, persistent=False)
        self._seen = [[j for j in range(len(self.views)) if mask[i, j]] for i in range(len(self.members))]
        self.strategy = strategy if strategy is not None else HardVote()
        self.strategy.setup(len(self.members), len(self.views), len(self.class_names))
        self.configure_metrics()

    # -- members ---------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.members.eval()  # frozen: batch norm and dropout stay in inference mode
        return self

    def member_logits(self, views: torch.Tensor) -> torch.Tensor:
        """``views`` ``[B, V, 3, S, S]`` -> logits ``[B, M, V, C]`` (masked pairs are zeros)."""
        v = views.shape[1]
        if v != len(self.views):
            raise ValueError(f"batch has {v} views, the ensemble expects {len(self.views)} ({self.views})")
        per_member = []
        for i, model in enumerate(self.members):
            seen = self._seen[i]
            # Static indexing only, so that traced and exported graphs keep their shapes.
            x = views if len(seen) == v else torch.cat([views[:, j : j + 1] for j in seen], 1)
            # Every view this member sees, in one batch; plain ints keep the sizes constant in
            # traced and exported graphs (ONNX's adaptive pooling needs them).
            x = x.reshape(-1, *(int(d) for d in views.shape[2:]))
            size = model.hparams.image_size
            if size and x.shape[-1] != size:  # each member sees views at the size it was trained on
                x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            if self.member_batch and len(x) > self.member_batch and not exporting():
                out = torch.cat([model(model._input(c)) for c in x.split(self.member_batch)])
            else:
                out = model(model._input(x))
            logits = out.float().reshape(-1, len(seen), len(self.class_names))
            cols = []
            for j in range(v):
                cols.append(logits[:, seen.index(j)] if j in seen else torch.zeros_like(logits[:, 0]))
            per_member.append(torch.stack(cols, 1))
        return torch.stack(per_member, 1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, C]`` for ``views`` ``[B, V, 3, S, S]``."""
        return self.strategy(self.member_logits(views), self.mask)

    # -- learning strategies ---------------------------------------------------------------
    @torch.no_grad()
    def collect(self, loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Member logits ``[N, M, V, C]``, labels and indices over a loader."""
        logits, labels, index = [], [], []
        for batch in loader:
            logits.append(self.member_logits(batch["views"].to(self.device)).cpu())
            labels.append(batch["label"])
            index.append(batch["index"])
        return torch.cat(logits), torch.cat(labels), torch.cat(index)

    def fit_strategy(self, datamodule) -> None:
        """Fit a learning strategy on the data module's held-out split, after the leak check."""
        split = self.hparams.strategy_fit_split
        if self.hparams.check_leaks:
            prints = [getattr(m, "data_fingerprint", None) for m in self.members]
            if split != "val":
                raise DataLeakError(f"strategy_fit_split={split!r}: only the held-out 'val' split can be checked")
            check_held_out(prints, datamodule.fingerprint(), self.member_names)
        # Every process fits on the whole split (not its shard), so all ranks hold one strategy.
        loader = datamodule._loader(split, False, distributed=False)
        logits, labels, _ = self.collect(loader)
        self.strategy.fit(logits, labels, self.mask.cpu())
        log.info("fitted %s on %d held-out %s predictions", type(self.strategy).__name__, len(labels), split)

    def _ensure_fitted(self) -> None:
        if self.strategy.is_fitted:
            return
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None:
            raise RuntimeError(f"{type(self.strategy).__name__} needs fitting: call fit_strategy(datamodule) first")
        self.fit_strategy(dm)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None and list(getattr(dm, "views", self.views)) != self.views:
            raise ValueError(f"the data yields views {dm.views}, the ensemble expects {self.views}: set data.views")

    def on_validation_start(self) -> None:
        self._ensure_fitted()

    def on_test_start(self) -> None:
        self._ensure_fitted()

    def on_predict_start(self) -> None:
        self._ensure_fitted()

    # -- steps -----------------------------------------------------------------------------
    def _eval_step(self, batch: dict, stage: str) -> None:
        self.update_metrics(self(batch["views"]), batch["label"], stage)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        scores = self(batch["views"])
        return {"probs": scores, "index": batch["index"], "label": batch["label"]}

    def training_step(self, batch, batch_idx):  # pragma: no cover - nothing to train by gradient
        raise RuntimeError(
            "an EnsembleModule has nothing to train by gradient: members are trained one by one "
            "(python -m lightning_fer fit with a classifier config) and learning strategies are fitted "
            "on held-out data by validate/test (or by the cv command)"
        )

    def configure_optimizers(self):  # pragma: no cover
        return None
