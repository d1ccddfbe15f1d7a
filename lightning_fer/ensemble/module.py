"""``EnsembleModule``: frozen members on every view, combined by a swappable strategy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import nn

from lightning_fer.data.regions import REGIONS
from lightning_fer.ensemble.functional import exporting, missing_views
from lightning_fer.ensemble.strategies import EnsembleStrategy, HardVote, strategy_from_spec
from lightning_fer.models.classifier import FERClassifier
from lightning_fer.models.evaluation import EvaluationMixin

log = logging.getLogger(__name__)


class DataLeakError(ValueError):
    """A learning strategy would be fitted on samples a member was trained on."""


class MemberNotFoundError(FileNotFoundError):
    """A member checkpoint of an ensemble does not exist; the message says what makes it."""


def _maker_of(path: Path) -> str:
    """The command that writes a member checkpoint at ``path``: the ``cv`` config whose output
    folder holds it, else ``fit`` with the member's config."""
    import yaml

    repo_configs = Path(__file__).resolve().parents[2] / "configs"
    text = str(path)
    for cfg in sorted(Path("configs").glob("*/cv*.yaml")) or sorted(repo_configs.glob("*/cv*.yaml")):
        try:
            data = yaml.safe_load(cfg.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        where = data.get("members_dir") or data.get("output_dir")
        if where and text.startswith(str(where).rstrip("/") + "/"):
            return f"python -m lightning_fer cv --config {cfg}"
    return "python -m lightning_fer fit --config <the member's config> (its ModelCheckpoint dirpath)"


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

    Views that could not be located on a face (the batch's ``view_mask``, e.g. the parts of a
    face MTCNN did not find) get no vote for that sample, with every strategy; a sample left
    with no vote falls back to its whole face (the batch's ``image``), judged by the members
    trained on faces (:func:`~lightning_fer.ensemble.functional.missing_views`).

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
                    raise MemberNotFoundError(
                        f"ensemble member {i}: checkpoint {path} does not exist; make it with: {_maker_of(path)}"
                    )
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
            # Another data set: its images are matched to the members' classes by name when
            # evaluation starts (FERDataModule.match_classes), and the differences reported.
            log.info("the data's classes %s differ from the members' %s: matched by name", list(class_names),
                     self.class_names)
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
        self.register_buffer(
            "face_members", torch.tensor([m.region == "face" for m in self.members]), persistent=False
        )
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
            logits = self._run_member(model, x).reshape(-1, len(seen), len(self.class_names))
            cols = []
            for j in range(v):
                cols.append(logits[:, seen.index(j)] if j in seen else torch.zeros_like(logits[:, 0]))
            per_member.append(torch.stack(cols, 1))
        return torch.stack(per_member, 1)

    def _run_member(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One member's float logits ``[N, C]`` on images ``[N, 3, S, S]``, at its own size."""
        size = model.hparams.image_size
        if size and x.shape[-1] != size:  # each member sees views at the size it was trained on
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self.member_batch and len(x) > self.member_batch and not exporting():
            out = torch.cat([model(model._input(c)) for c in x.split(self.member_batch)])
        else:
            out = model(model._input(x))
        return out.float()

    def voters(
        self, views: torch.Tensor, view_mask: torch.Tensor | None = None, face: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Member logits ``[B, M, V, C]`` and the mask of real member-views: ``[M, V]`` without a
        ``view_mask``, else ``[B, M, V]``, with the face fallback applied where a sample has no
        real view (``face`` ``[B, 3, S, S]``: the whole faces; where the face is among the views
        it is taken from there)."""
        logits = self.member_logits(views)
        if view_mask is None or exporting():
            return logits, self.mask
        real = self.mask[None] & view_mask.bool().to(logits.device)[:, None, :]
        none = ~real.flatten(1).any(1)
        face_logits = None
        if bool(none.any()) and bool(self.face_members.any()):
            if "face" in self.views:
                face_logits = logits[:, :, self.views.index("face")]
            elif face is not None:
                face_logits = torch.zeros_like(logits[:, :, 0])
                rows = none.nonzero().squeeze(1)
                for i, model in enumerate(self.members):
                    if self.face_members[i]:
                        face_logits[rows, i] = self._run_member(model, face[rows].to(logits.device))
        return missing_views(logits, self.mask, view_mask, face_logits, self.face_members)

    def forward(
        self, views: torch.Tensor, view_mask: torch.Tensor | None = None, face: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class scores ``[B, C]`` for ``views`` ``[B, V, 3, S, S]``; ``view_mask`` ``[B, V]``
        and ``face`` ``[B, 3, S, S]`` as in :meth:`voters` (an exported graph takes views only)."""
        return self.strategy(*self.voters(views, view_mask, face))

    # -- learning strategies ---------------------------------------------------------------
    @torch.no_grad()
    def collect(self, loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Over a loader: member logits ``[N, M, V, C]``, labels ``[N]``, indices ``[N]`` and
        the views located on each face ``[N, V]`` (all ``True`` where the batches carry none).

        The logits are the members' raw answers on every view; :meth:`voters` (or
        :func:`~lightning_fer.ensemble.functional.missing_views`) turns them and the view mask
        into what the strategy sees.
        """
        logits, labels, index, located = [], [], [], []
        for batch in loader:
            views = batch["views"].to(self.device)
            logits.append(self.member_logits(views).cpu())
            labels.append(batch["label"])
            index.append(batch["index"])
            vm = batch.get("view_mask")
            located.append(torch.ones(views.shape[:2], dtype=torch.bool) if vm is None else vm.bool().cpu())
        return torch.cat(logits), torch.cat(labels), torch.cat(index), torch.cat(located)

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
        logits, labels, mask = [], [], []
        with torch.no_grad():
            for batch in loader:
                z, m = self.voters(batch["views"].to(self.device), batch.get("view_mask"), batch.get("image"))
                logits.append(z.cpu())
                mask.append(self.strategy.sample_mask(m, *z.shape[:3], "cpu"))
                labels.append(batch["label"])
        labels_ = torch.cat(labels)
        known = labels_ >= 0  # images of classes the members do not know teach nothing
        self.strategy.fit(torch.cat(logits)[known], labels_[known], torch.cat(mask)[known])
        log.info("fitted %s on %d held-out %s predictions", type(self.strategy).__name__, sum(map(len, labels)), split)

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
        self._match_data_classes()
        self._ensure_fitted()

    def on_test_start(self) -> None:
        self._match_data_classes()
        self._ensure_fitted()

    def on_predict_start(self) -> None:
        self._match_data_classes()
        self._warn_if_demo_model()
        self._ensure_fitted()

    # -- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lightning_fer"] = {"strategy": self.strategy.spec(), "views": self.views}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Make the checkpoint's strategy again (its learnt state follows in the state dict), so
        that ``EnsembleModule.load_from_checkpoint(path)`` is the fitted ensemble that was saved."""
        spec = (checkpoint.get("lightning_fer") or {}).get("strategy")
        if not spec:
            return
        current = self.strategy.spec()
        if current["class_path"] == spec["class_path"] and current["init_args"] == spec["init_args"]:
            return
        log.info("ensemble checkpoint: strategy %s (was %s)", spec["class_path"], current["class_path"])
        self.strategy = strategy_from_spec(spec)
        self.strategy.setup(len(self.members), len(self.views), len(self.class_names))

    # -- steps -----------------------------------------------------------------------------
    def _eval_step(self, batch: dict, stage: str) -> None:
        self.update_metrics(self(batch["views"], batch.get("view_mask"), batch.get("image")), batch["label"], stage)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        scores = self(batch["views"], batch.get("view_mask"), batch.get("image"))
        return {"probs": scores, "index": batch["index"], "label": batch["label"]}

    def training_step(self, batch, batch_idx):  # pragma: no cover - nothing to train by gradient
        raise RuntimeError(
            "an EnsembleModule has nothing to train by gradient: members are trained one by one "
            "(python -m lightning_fer fit with a classifier config) and learning strategies are fitted "
            "on held-out data by validate/test (or by the cv command)"
        )

    def configure_optimizers(self):  # pragma: no cover
        return None
