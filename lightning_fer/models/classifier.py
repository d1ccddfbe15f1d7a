"""``FERClassifier``: one backbone, one thin LightningModule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lightning_fer.data.regions import REGIONS
from lightning_fer.models.backbones import create_backbone
from lightning_fer.models.evaluation import EvaluationMixin
from lightning_fer.models.registry import builder_options, get_builder

log = logging.getLogger(__name__)


@dataclass
class BatchMix:
    """Mixup and CutMix on training batches (torchvision's ``MixUp`` and ``CutMix``; with both
    on, one of the two per batch).

    Args:
        mixup_alpha: Beta(alpha, alpha) of mixup's weights; 0 turns mixup off.
        cutmix_alpha: Beta(alpha, alpha) of CutMix's box area; 0 turns CutMix off.
        p: share of training batches mixed.
    """

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    p: float = 1.0


class FERClassifier(EvaluationMixin, L.LightningModule):
    """A facial expression classifier on one backbone, trained on the face or on one region.

    Logs ``{stage}/loss``, ``{stage}/acc``, ``{stage}/balanced_acc``, ``{stage}/precision``,
    ``{stage}/recall``, ``{stage}/f1`` (macro) and ``{stage}/f1_<class>`` on val and test;
    torchmetrics syncs them across processes, and the data module's evaluation sampler counts
    each sample once. ``predict_step`` returns class probabilities.

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
        scheduler: ``cosine`` (over ``max_epochs``, per step), ``cosine_restarts`` (``cycles``
            cosine cycles of equal length, each restarting at ``lr``: a snapshot ensemble's
            schedule, whose cycle ends ``cv`` keeps as checkpoints), ``onecycle`` (linear-cosine
            warm-up to ``lr`` over the first ``warmup`` share of the steps, then cosine down to
            ``lr / 25e4``, momentum cycled; per step) or ``none``.
        cycles: number of cycles of ``cosine_restarts``.
        warmup: share of the steps ``onecycle`` spends warming up.
        mix: mixup / CutMix on training batches (:class:`BatchMix`); ``None``: off.
        tta: test-time augmentation of this classifier's own ``validate``/``test``/``predict``:
            ``flip`` averages the logits of the face and its mirror; ``none``.
        label_smoothing: cross-entropy label smoothing.
        class_weights: ``None``, ``balanced`` (n / (k * count) on the training split) or one
            weight per class.
        aux_weight: weight of Inception V3's auxiliary loss (the paper's 0.4).
        spp_levels: SPP-net pyramid grid sides.
        spp_trunk: SPP-net trunk (``zf5`` or a torchvision model name).
        spp_hidden: SPP-net hidden width.
        dropout: SPP-net dropout.
        stem: ``imagenet``, or for small faces in ResNets ``small_pool`` / ``small``
            (:func:`~lightning_fer.models.backbones.create_backbone`).
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
        if tta not in ("none", "flip"):
            raise ValueError(f"tta must be 'none' or 'flip', got {tta!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
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

    # -- hooks that build ----------------------------------------------------------------
    def configure_model_(self) -> None:
        hp = self.hparams
        self.backbone: nn.Module = create_backbone(
            hp.backbone, hp.num_classes, hp.in_channels, hp.image_size, hp.pretrained, **self._backbone_options()
        )
        self._mixer = _mixer(hp.get("mix"), hp.num_classes)
        if hp.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        if hp.get("compile"):
            self.backbone.compile()

    def _backbone_options(self) -> dict[str, Any]:
        """``backbone_args``, and the older flat options (``spp_*``, ``dropout``, ``stem``) that
        the builder takes."""
        hp = self.hparams
        known = builder_options(get_builder(hp.backbone))
        flat = {k: hp.get(k) for k in ("spp_levels", "spp_trunk", "spp_hidden", "dropout", "stem") if k in hp}
        opts = {k: v for k, v in flat.items() if k in known}
        return {**opts, **dict(hp.get("backbone_args") or {})}

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
            from lightning_fer.models.distill import load_soft_targets

            self.teacher_probs = load_soft_targets(self.hparams.teacher, self.class_names, self.data_fingerprint)
            train = getattr(dm, "splits", {}).get("train", []) if dm is not None else []
            missing = int(torch.isnan(self.teacher_probs[torch.as_tensor(list(train), dtype=torch.long)]).any(1).sum())
            if missing:
                raise ValueError(f"teacher soft targets {self.hparams.teacher} lack {missing} of the {len(train)} "
                                 "training images: compute them on this run's training split")

    # -- forward and steps ---------------------------------------------------------------
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
        """Cross-entropy over the samples whose view is real (``real`` ``[B]``; ``None``: all).
        Samples whose view could not be located add nothing, and a batch without any gives a
        zero loss that still takes part in the step (so that DDP processes stay in step)."""
        w = self.loss_weights.to(logits.device)
        if y.ndim == 2:  # mixed soft targets (mixup / CutMix): every sample is real there
            return F.cross_entropy(logits.float(), y, weight=w, label_smoothing=self.hparams.label_smoothing)
        if real is None or bool(real.all()):
            return F.cross_entropy(logits.float(), y, weight=w, label_smoothing=self.hparams.label_smoothing)
        per = F.cross_entropy(logits.float(), y, weight=w, label_smoothing=self.hparams.label_smoothing, reduction="none")
        keep = real.to(per.dtype)
        # As the weighted mean cross_entropy computes: divided by the summed class weights.
        return (per * keep).sum() / (w[y] * keep).sum().clamp(min=1e-12)

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

    # -- optimisation and checkpoints ----------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        params = self.parameters()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, nesterov=True, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return opt
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        if hp.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=steps,
                                                        pct_start=hp.get("warmup", 0.2))
        elif hp.scheduler == "cosine_restarts":
            sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=max(steps // hp.cycles, 1))
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

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
            self.hparams.in_channels = channels
            pretrained, self.hparams.pretrained = self.hparams.pretrained, None
            device = next(self.parameters()).device
            self.configure_model_()
            self.hparams.pretrained = pretrained
            self.to(device)
        names = meta.get("class_names")
        if names and list(names) != self.class_names:
            log.info("checkpoint classes %s replace %s", list(names), self.class_names)
            self.hparams.num_classes = len(names)
            self.hparams.class_names = list(names)
            self.class_names = list(names)
            pretrained, self.hparams.pretrained = self.hparams.pretrained, None  # the weights come from the checkpoint
            device = next(self.parameters()).device
            self.configure_model_()
            self.hparams.pretrained = pretrained
            self.configure_metrics()
            self.loss_weights = torch.ones(len(names))
            self.to(device)


def _mixer(mix: BatchMix | dict | None, num_classes: int):
    """torchvision's MixUp / CutMix (or a random choice of the two) for ``mix``; ``None`` when off."""
    if mix is None:
        return None
    if isinstance(mix, dict):
        mix = BatchMix(**mix)
    from torchvision.transforms import v2

    parts = []
    if mix.mixup_alpha > 0:
        parts.append(v2.MixUp(alpha=mix.mixup_alpha, num_classes=num_classes))
    if mix.cutmix_alpha > 0:
        parts.append(v2.CutMix(alpha=mix.cutmix_alpha, num_classes=num_classes))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else v2.RandomChoice(parts)
