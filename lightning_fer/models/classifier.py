"""``FERClassifier``: one backbone, one thin LightningModule."""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from lightning_fer.data.regions import REGIONS
from lightning_fer.models.backbones import create_backbone
from lightning_fer.models.evaluation import EvaluationMixin
from lightning_fer.models.mixing import BatchMix, make_mixer, masked_cross_entropy
from lightning_fer.models.optim import optimizer_and_schedule
from lightning_fer.models.registry import builder_kwargs

log = logging.getLogger(__name__)


class FERClassifier(EvaluationMixin, L.LightningModule):
    """A facial expression classifier on one backbone, trained on the face or on one region.

    Logs ``{stage}/loss``, ``acc``, ``balanced_acc``, macro ``precision``, ``recall``, ``f1`` and
    ``f1_<class>`` on val and test (torchmetrics, synced across processes; each sample counted
    once). ``predict_step`` returns class probabilities.

    Args:
        backbone: a registered name (``fer_vgg``, ``fer_xception``, ``sppnet``, ``inception_v3``,
            ``resnet50`` ...), any torchvision classifier, or ``timm/<name>`` with timm installed
            (:mod:`~lightning_fer.models.registry`); an unknown name lists the known ones.
        backbone_args: the builder's own options (``{widths: [32, 64, 128, 256]}`` for
            ``fer_vgg``; any ``timm.create_model`` keyword for timm), checked by the builder.
        num_classes: number of classes (linked from the data by the CLI).
        class_names: class names (linked from the data by the CLI), stored in checkpoints.
        image_size: input side (linked from the data): decides Inception V3's auxiliary head.
        region: the region this classifier sees; ``None``: the data module's first view (set
            at setup, so ``--data.views=[mouth]`` makes a mouth expert).
        in_channels: 1 or 3; the CLI sets it from ``data.channels``. Batches of the other kind are
            converted (3 channels averaged to grey, grey repeated to 3).
        pretrained: torchvision weights name or a local weights file.
        lr: learning rate.
        weight_decay: weight decay.
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        scheduler: per step: ``cosine``, ``cosine_restarts`` (``cycles`` equal cosine cycles, a
            snapshot ensemble's schedule), ``onecycle`` (warm-up to ``lr`` over ``warmup`` of the
            steps, then cosine to ``lr / 25e4``, momentum cycled) or ``none``.
        cycles: number of cycles of ``cosine_restarts``.
        warmup: share of the steps ``onecycle`` spends warming up.
        mix: mixup / CutMix on training batches (:class:`BatchMix`); ``None``: off.
        tta: test-time augmentation of this classifier's own ``validate``/``test``/``predict``:
            ``flip`` averages the logits of the face and its mirror; ``none``.
        label_smoothing: cross-entropy label smoothing.
        class_weights: ``None``, ``balanced`` (n / (k * count) on the training split) or one
            weight per class.
        aux_weight: weight of Inception V3's auxiliary loss (the paper's 0.4).
        spp_levels, spp_trunk, spp_hidden, dropout, stem: SPP-net's options and the ResNet stem
            as flat options (as in 0.1 checkpoints; ``backbone_args`` wins where both are set).
        channels_last: use the channels-last memory format; ``None``: as the CLI's ``--fast_path``
            chooses (contiguous when the model is built in Python).
        compile: run the backbone through ``torch.compile`` (``nn.Module.compile``: the weights'
            names, checkpoints and DDP are unchanged; the first steps pay the compilation).
        teacher: a soft-targets file (``soft_targets.pt`` of a ``cv`` run): train on a teacher's
            class probabilities as well as the labels (distillation, :mod:`~lightning_fer.models.distill`).
        distill_weight: weight of the teacher's term (``1 - distill_weight`` on the labels).
        distill_temperature: temperature of the distillation term.

    Example:
        >>> model = FERClassifier("resnet18", num_classes=7, image_size=64)
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        backbone_args: dict[str, Any] | None = None,
        num_classes: int = 7,
        class_names: list[str] | None = None,
        image_size: int = 224,
        region: str | None = None,
        in_channels: int = 3,
        pretrained: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: Literal["adamw", "sgd"] = "adamw",
        scheduler: Literal["cosine", "cosine_restarts", "onecycle", "none"] = "cosine",
        cycles: int = 1,
        warmup: float = 0.2,
        label_smoothing: float = 0.0,
        mix: BatchMix | None = None,
        tta: Literal["none", "flip"] = "none",
        class_weights: Literal["balanced"] | list[float] | None = None,
        aux_weight: float = 0.4,
        spp_levels: list[int] = [1, 2, 4],  # noqa: B006
        spp_trunk: str = "zf5",
        spp_hidden: int = 1024,
        dropout: float = 0.5,
        stem: Literal["imagenet", "small_pool", "small"] = "imagenet",
        channels_last: bool | None = None,
        compile: bool = False,
        teacher: str | None = None,
        distill_weight: float = 0.5,
        distill_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        if region is not None and region not in REGIONS:
            raise ValueError(f"region {region!r} is not one of {list(REGIONS)}")
        if isinstance(class_weights, list) and len(class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(class_weights)} values for {num_classes} classes")
        if cycles < 1:
            raise ValueError(f"cycles must be at least 1, got {cycles}")
        if not 0.0 < warmup < 1.0:
            raise ValueError(f"warmup must be in (0, 1), got {warmup}")
        if tta not in ("none", "flip") or in_channels not in (1, 3):
            raise ValueError(f"tta must be 'none' or 'flip' and in_channels 1 or 3, got {tta!r}, {in_channels}")
        if not 0.0 <= distill_weight <= 1.0 or distill_temperature <= 0:
            raise ValueError(f"distill_weight must be in [0, 1] and distill_temperature > 0, got {distill_weight}, "
                             f"{distill_temperature}")
        self.save_hyperparameters()
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.configure_model_()
        self.configure_metrics()
        self.register_buffer("loss_weights", torch.ones(num_classes), persistent=False)
        self.data_fingerprint: dict | None = None
        self.teacher_probs: torch.Tensor | None = None

    def configure_model_(self) -> None:
        hp = self.hparams
        self.backbone: nn.Module = create_backbone(
            hp.backbone, hp.num_classes, hp.in_channels, hp.image_size, hp.pretrained,
            **builder_kwargs(hp.backbone, hp, ("spp_levels", "spp_trunk", "spp_hidden", "dropout", "stem"),
                             hp.get("backbone_args")),
        )
        self._mixer = make_mixer(hp.get("mix"), hp.num_classes)
        if hp.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        if hp.get("compile"):
            self.backbone.compile()

    def setup(self, stage: str) -> None:
        cw = self.hparams.class_weights
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        views = list(getattr(dm, "views", None) or [])
        if views:
            if self.hparams.region is None:
                self.hparams.region = views[0]
            elif views[0] != self.hparams.region:
                raise ValueError(
                    f"this classifier sees {self.hparams.region!r}, but the data's first view is {views[0]!r}: "
                    f"set data.views=[{self.hparams.region}]"
                )
        if cw == "balanced" and stage == "fit":
            if dm is None or not hasattr(dm, "train_class_counts"):
                raise ValueError("class_weights='balanced' needs an FERDataModule to count the training split")
            counts = torch.as_tensor(dm.train_class_counts(), dtype=torch.float32).clamp(min=1)
            self.loss_weights = counts.sum() / (len(counts) * counts)
            log.info("balanced class weights: %s", [round(w, 3) for w in self.loss_weights.tolist()])
        elif isinstance(cw, list):
            self.loss_weights = torch.tensor(cw, dtype=torch.float32)
        if dm is not None and hasattr(dm, "fingerprint") and stage == "fit":
            self.data_fingerprint = dm.fingerprint()
            names = getattr(dm, "class_names", None)
            if names and list(names) != self.class_names:
                raise ValueError(f"the data's classes {names} differ from the model's {self.class_names}")
        if self.hparams.get("teacher") and stage == "fit":
            from lightning_fer.models.distill import teacher_targets

            self.teacher_probs = teacher_targets(self.hparams.teacher, self.class_names, self.data_fingerprint, dm)

    @property
    def region(self) -> str:
        return self.hparams.region or "face"

    def _input(self, batch: dict | torch.Tensor) -> torch.Tensor:
        x = batch["views"][:, 0] if isinstance(batch, dict) else batch
        if self.hparams.in_channels == 1 and x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        elif self.hparams.in_channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` for images ``[B, C, H, W]`` (the main head in training too)."""
        out = self.backbone(x)
        return out[0] if isinstance(out, tuple) else out

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Logits as ``validate``, ``test`` and ``predict`` see them: with ``tta: flip`` the mean
        of the logits of ``x`` and of its mirror."""
        logits = self(x)
        if self.hparams.get("tta", "none") == "flip":
            logits = (logits + self(x.flip(-1))) / 2
        return logits

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the samples whose view is real (``real`` ``[B]``; ``None``: all;
        :func:`~lightning_fer.models.mixing.masked_cross_entropy`); ``y`` may be mixed soft targets."""
        return masked_cross_entropy(logits, y, self.loss_weights.to(logits.device), self.hparams.label_smoothing, real)

    def _main_loss(self, logits: torch.Tensor, batch: dict, y: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """The training loss of the main head: cross-entropy, or with a teacher the distillation
        loss (:func:`~lightning_fer.models.distill.distill_loss`; class weights do not apply)."""
        if self.teacher_probs is None:
            return self._loss(logits, y, real)
        from lightning_fer.models.distill import distill_loss

        hp = self.hparams
        t = self.teacher_probs.to(logits.device)[batch["index"].to(logits.device)]
        return distill_loss(logits, y, t, hp.distill_weight, hp.distill_temperature, hp.label_smoothing, real)

    @staticmethod
    def _real(batch: dict | torch.Tensor) -> torch.Tensor | None:
        """Which samples' view (the first of the batch's views) could be located."""
        mask = batch.get("view_mask") if isinstance(batch, dict) else None
        return None if mask is None else mask[:, 0].bool()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, y, real = self._input(batch), batch["label"], self._real(batch)
        target = y
        if self._mixer is not None and (real is None or bool(real.all())) and self.teacher_probs is None:
            if torch.rand(()) < self.hparams.mix.p:
                x, target = self._mixer(x, y)
        out = self.backbone(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = self._main_loss(logits, batch, target, real)
        if aux is not None:  # Inception V3: main + aux_weight * auxiliary
            loss = loss + self.hparams.aux_weight * self._loss(aux, target, real)
        hit = logits.argmax(1) == y
        n = len(y) if real is None else int(real.sum())
        acc = (hit if real is None else hit[real]).float().mean() if n else torch.zeros((), device=y.device)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=max(n, 1))
        self.log("train/acc", acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=max(n, 1))
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        logits = self.evaluate(self._input(batch))
        y, real = batch["label"], self._real(batch)
        known = y >= 0  # -1: a class this model does not know (another data set's)
        keep = known if real is None else known & real  # a region expert is scored where its region is
        if not bool(keep.all()):
            logits, y = logits[keep], y[keep]
        loss = self._loss(logits, y) if len(y) else logits.new_zeros(())
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=max(len(y), 1))
        self.update_metrics(logits, y, stage)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        probs = self.evaluate(self._input(batch)).float().softmax(1)
        out = {"probs": probs}
        if isinstance(batch, dict):
            out.update(index=batch["index"], label=batch["label"])
        return out

    def configure_optimizers(self):
        steps = max(int(self.trainer.estimated_stepping_batches), 1) if self.hparams.scheduler != "none" else 1
        return optimizer_and_schedule(self.hparams, self.parameters(), steps)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lightning_fer"] = {
            "class_names": self.class_names,
            "region": self.region,
            "backbone": {k: self.hparams[k] for k in ("backbone", "in_channels", "image_size", "spp_levels", "spp_trunk")},
            "data_fingerprint": self.data_fingerprint,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restoring into a model built for other classes (``test`` on another data set, whose
        classes the CLI linked in): the model takes the checkpoint's classes, and the data is
        matched to them by name when evaluation starts."""
        meta = checkpoint.get("lightning_fer") or {}
        self.data_fingerprint = meta.get("data_fingerprint")
        channels = (meta.get("backbone") or {}).get("in_channels")
        if channels and channels != self.hparams.in_channels:
            # A grey model tested on colour data (or the reverse): the model keeps the
            # checkpoint's input, and _input converts the batches.
            log.info("checkpoint takes %d input channel(s); data.channels gives %d: batches are converted",
                     channels, self.hparams.in_channels)
            self._rebuild(in_channels=channels)
        names = meta.get("class_names")
        if names and list(names) != self.class_names:
            log.info("checkpoint classes %s replace %s", list(names), self.class_names)
            self.class_names = list(names)
            self._rebuild(num_classes=len(names), class_names=list(names))
            self.configure_metrics()
            self.loss_weights = torch.ones(len(names))

    def _rebuild(self, **changes) -> None:
        """Build the backbone again with ``changes`` to the options, on the same device, without
        pretrained weights (the checkpoint's follow)."""
        device = next(self.parameters()).device
        pretrained, self.hparams.pretrained = self.hparams.pretrained, None
        self.hparams.update(changes)
        self.configure_model_()
        self.hparams.pretrained = pretrained
        self.to(device)
