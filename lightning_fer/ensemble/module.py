"""``EnsembleModule``: a thin LightningModule over :class:`~lightning_fer.ensemble.net.EnsembleNet`
(frozen members on every view, combined by a swappable strategy)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch import nn

from lightning_fer.ensemble.members import (
    DataLeakError,
    MemberNet,
    MemberNotFoundError,
    check_held_out,
    load_member,
)
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.ensemble.strategies import EnsembleStrategy, HardVote, strategy_from_spec
from lightning_fer.models.evaluation import EvaluationMixin

log = logging.getLogger(__name__)

__all__ = ["DataLeakError", "EnsembleModule", "MemberNotFoundError", "check_held_out"]


class EnsembleModule(EvaluationMixin, L.LightningModule):
    """Every member on every view, combined by a strategy: validate, test and predict with it.

    Members are ``FERClassifier`` checkpoints (or modules) of any mix of backbones, held as plain
    networks (:class:`~lightning_fer.ensemble.members.MemberNet`) in an
    :class:`~lightning_fer.ensemble.net.EnsembleNet` (``self.ensemble``); they are frozen, in eval
    mode, and move with this module's device and precision. Region experts are bound to their
    region; members trained on ``face`` see every view. Views not located on a face get no vote
    (the batch's ``view_mask``), with a fallback to the whole face.

    Strategies that learn are fitted on the data module's validation split (the held-out fold)
    at the start of validate, test or predict, after the members' data fingerprints are checked.

    Args:
        members: checkpoint paths, ``FERClassifier`` modules or ``MemberNet`` s.
        strategy: how to combine: ``HardVote``, ``SoftVote``, ``Stacking`` or a subclass of
            :class:`EnsembleStrategy` given by ``class_path``.
        views: regions the ensemble looks at; must equal the data module's ``views``.
        class_names: linked from the data by the CLI; data with other classes is matched to the
            members' by name when evaluation starts.
        image_size: side of the views the data yields (linked from the data by the CLI); each
            member resizes them to its own size. Default: the largest member's.
        check_leaks: refuse to fit a learning strategy on data a member was trained on.
        member_batch: split each member's ``B x views`` images into calls of at most this many
            (results unchanged), to cap the memory of big batches of many views. ``None``: one
            call per member, which was as fast or faster in ``benchmarks/ensemble.py``.
        flip: horizontal-flip test-time augmentation: the mirrored face is one more view
            (``face_flip``) every whole-face member votes on (``face`` must be among ``views``).

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
        class_names: list[str] | None = None,
        image_size: int | None = None,
        check_leaks: bool = True,
        member_batch: int | None = None,
        flip: bool = False,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        # Paths are worth recording; modules and the strategy object are not (their weights are
        # in the state dict, their settings in the CLI's config file and the checkpoint).
        self.save_hyperparameters(ignore=["strategy"] if isinstance(members[0], (str, Path)) else ["strategy", "members"])
        nets = [self._member(m, i) for i, m in enumerate(members)]
        self.ensemble = EnsembleNet(nets, strategy if strategy is not None else HardVote(), views, image_size,
                                    member_batch, flip)
        if class_names is not None and list(class_names) != self.class_names:
            log.info("the data's classes %s differ from the members' %s: matched by name", list(class_names),
                     self.class_names)
        self.configure_metrics()

    def set_channels_last(self, on: bool = True) -> EnsembleModule:
        """Run every member in the channels-last memory format (or back); the fast path's
        (:func:`lightning_fer.fastpath.apply`). Built in Python, each member runs as it was trained."""
        for net in self.ensemble.members:
            net.set_channels_last(on)
        return self

    def compile_backbone(self) -> EnsembleModule:
        """Run every member's backbone through ``torch.compile``."""
        for net in self.ensemble.members:
            net.backbone.compile()
        return self

    @staticmethod
    def _member(m, i: int) -> MemberNet:
        from lightning_fer.models.classifier import FERClassifier

        if isinstance(m, (str, Path)):
            return load_member(m, i)
        if isinstance(m, MemberNet):
            return m
        if isinstance(m, FERClassifier):
            return MemberNet.from_classifier(m, f"{m.hparams.backbone}[{m.region}]#{i}")
        raise TypeError(f"ensemble member {i}: expected a checkpoint path or FERClassifier, got {type(m).__name__}")

    @property
    def members(self) -> nn.ModuleList:
        return self.ensemble.members

    @property
    def views(self) -> list[str]:
        return self.ensemble.views

    @property
    def class_names(self) -> list[str]:
        return self.ensemble.class_names

    @property
    def member_names(self) -> list[str]:
        return self.ensemble.member_names

    @property
    def mask(self) -> torch.Tensor:
        return self.ensemble.mask

    @property
    def strategy(self) -> EnsembleStrategy:
        return self.ensemble.strategy

    def member_logits(self, views: torch.Tensor) -> torch.Tensor:
        return self.ensemble.member_logits(views)

    def voters(self, views, view_mask=None, face=None):
        return self.ensemble.voters(views, view_mask, face)

    def collect(self, loader):
        return self.ensemble.collect(loader)

    def forward(self, views: torch.Tensor, view_mask: torch.Tensor | None = None, face: torch.Tensor | None = None):
        """Class scores ``[B, C]`` (see :meth:`EnsembleNet.forward`)."""
        return self.ensemble(views, view_mask, face)

    def fit_strategy(self, datamodule) -> None:
        """Fit a learning strategy on the data module's held-out split, after the leak check."""
        if self.hparams.check_leaks:
            prints = [m.data_fingerprint for m in self.members]
            check_held_out(prints, datamodule.fingerprint(), self.member_names)
        # Every process fits on the whole split (not its shard), so all ranks hold one strategy.
        n = self.ensemble.fit_strategy(datamodule.loader("val", distributed=False))
        log.info("fitted %s on %d held-out val predictions", type(self.strategy).__name__, n)

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

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lightning_fer"] = {"strategy": self.strategy.spec(), "views": self.views}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Make the checkpoint's strategy again (its learnt state follows in the state dict), so
        that ``EnsembleModule.load_from_checkpoint(path)`` is the fitted ensemble that was saved.
        Checkpoints of 0.1 (members and strategy at the top level) are read too."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(("members.", "strategy."))]:
            state[f"ensemble.{key}"] = state.pop(key)
        spec = (checkpoint.get("lightning_fer") or {}).get("strategy")
        if not spec:
            return
        current = self.strategy.spec()
        if current["class_path"] == spec["class_path"] and current["init_args"] == spec["init_args"]:
            return
        log.info("ensemble checkpoint: strategy %s (was %s)", spec["class_path"], current["class_path"])
        self.ensemble.set_strategy(strategy_from_spec(spec))

    def _eval_step(self, batch: dict, stage: str) -> None:
        self.update_metrics(self(batch["views"], batch.get("view_mask"), batch.get("image")), batch["label"], stage)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        views, mask = batch["views"], batch.get("view_mask")
        if self.predict_runtime is not None and (mask is None or bool(mask.all())):  # missing views: eager masking
            scores = self.predict_runtime(views)
        else:
            scores = self(views, mask, batch.get("image"))
        return {"probs": scores, "index": batch["index"], "label": batch["label"]}

    def training_step(self, batch, batch_idx):  # pragma: no cover - nothing to train by gradient
        raise RuntimeError(
            "an EnsembleModule has nothing to train by gradient: members are trained one by one "
            "(python -m lightning_fer fit with a classifier config) and learning strategies are fitted "
            "on held-out data by validate/test (or by the cv command)"
        )

    def configure_optimizers(self):  # pragma: no cover
        return None
