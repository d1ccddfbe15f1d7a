"""``FERClassifier``: one backbone, one thin LightningModule."""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from lightning_fer.data.regions import REGIONS
from lightning_fer.models.backbones import create_backbone
from lightning_fer.models.distill import Distillation
from lightning_fer.models.evaluation import EvaluationMixin, flip_average
from lightning_fer.models.legacy import current_options
from lightning_fer.models.loss import Loss
from lightning_fer.models.mixing import BatchMix, make_mixer, masked_cross_entropy
from lightning_fer.models.optim import Optimization, optimizer_and_schedule
from lightning_fer.options import group, plain

log = logging.getLogger(__name__)


def adapt_input(x: torch.Tensor, in_channels: int, channels_last: bool) -> torch.Tensor:
    """Images as a network of ``in_channels`` takes them (a classifier's and a member's input)."""
    x = x if in_channels == x.shape[1] else x.mean(1, keepdim=True) if in_channels == 1 else x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


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
            ``fer_vgg``; any ``timm.create_model`` keyword for timm), checked by the builder, and
            ``pretrained``: torchvision weights name or a local weights file.
        num_classes: number of classes; ``None``: as many as ``class_names`` (which the CLI links from
            the data), else 7.
        class_names: class names (linked from the data by the CLI), stored in checkpoints.
        image_size: input side (linked from the data): decides Inception V3's auxiliary head.
        region: the region this classifier sees; ``None``: the data module's first view (set
            at setup, so ``--data.views=[mouth]`` makes a mouth expert).
        in_channels: 1 or 3; the CLI sets it from ``data.channels``. Batches of the other kind are
            converted (3 channels averaged to grey, grey repeated to 3).
        optim: optimiser and schedule (:class:`~lightning_fer.models.optim.Optimization`:
            ``optimizer``, ``lr``, ``weight_decay``, ``scheduler``, ``cycles``, ``warmup``).
        mix: mixup / CutMix on training batches (:class:`BatchMix`); ``None``: off.
        tta: test-time augmentation of this classifier's own ``validate``/``test``/``predict``:
            ``flip`` averages the logits of the face and its mirror; ``none``.
        loss: what the cross-entropy weighs (:class:`~lightning_fer.models.loss.Loss`:
            ``label_smoothing``, ``class_weights``, ``aux_weight``).
        distill: learn a teacher's soft targets too (:class:`~lightning_fer.models.distill.Distillation`:
            ``teacher`` file, ``weight``, ``temperature``); ``None``: off.

    Checkpoints of earlier versions (0.2's flat ``lr``, ``spp_levels``, ``teacher`` ...; 0.3's
    ``label_smoothing``, ``pretrained`` ...) load: :meth:`on_load_checkpoint` moves their options into
    the groups (:func:`~lightning_fer.models.legacy.current_options`) and builds the backbone they name.

    Memory format and ``torch.compile`` are the fast path's (:func:`lightning_fer.fastpath.apply`,
    ``--fast_path``, ``--channels_last``, ``--compile``): :meth:`set_channels_last`, :meth:`compile_backbone`.

    Example:
        >>> model = FERClassifier("resnet18", num_classes=7, image_size=64)
        >>> model(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        backbone_args: dict[str, Any] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        image_size: int = 224,
        region: str | None = None,
        in_channels: int = 3,
        optim: Optimization = Optimization(),  # noqa: B008 (frozen)
        loss: Loss = Loss(),  # noqa: B008 (frozen)
        mix: BatchMix | None = None,
        tta: Literal["none", "flip"] = "none",
        distill: Distillation | None = None,
    ) -> None:
        super().__init__()
        optim, loss, mix = group(Optimization, optim), group(Loss, loss), None if mix is None else group(BatchMix, mix)
        distill = None if distill is None else group(Distillation, distill)
        if num_classes is None:
            num_classes = len(class_names) if class_names else 7
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}")
        if region is not None and region not in REGIONS:
            raise ValueError(f"region {region!r} is not one of {list(REGIONS)}")
        if isinstance(loss.class_weights, list) and len(loss.class_weights) != num_classes:
            raise ValueError(f"loss.class_weights has {len(loss.class_weights)} values for {num_classes} classes")
        if tta not in ("none", "flip") or in_channels not in (1, 3):
            raise ValueError(f"tta must be 'none' or 'flip' and in_channels 1 or 3, got {tta!r}, {in_channels}")
        self.optim, self.loss, self.mix, self.distill = optim, loss, mix, distill
        # The groups are saved as plain mappings, so that checkpoints load with weights_only=True.
        optim, loss, mix, distill = plain(optim), plain(loss), plain(mix), plain(distill)
        self.save_hyperparameters()
        self.hparams.num_classes = num_classes  # resolved (LightningCLI hands save_hyperparameters its own config)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        #: the channels-last memory format (the fast path's choice, :meth:`set_channels_last`)
        self.channels_last = False
        self.configure_model_()
        self.configure_metrics()
        self.register_buffer("loss_weights", torch.ones(num_classes), persistent=False)
        self.data_fingerprint: dict | None = None
        self.teacher_probs: torch.Tensor | None = None

    def configure_model_(self, weights: bool = True) -> None:
        """Build the backbone the options name (``weights``: with ``backbone_args.pretrained``)."""
        hp = self.hparams
        args = dict(hp.get("backbone_args") or {})
        pretrained = args.pop("pretrained", None)
        pretrained = pretrained if weights else None
        self.backbone: nn.Module = create_backbone(hp.backbone, hp.num_classes, hp.in_channels, hp.image_size, pretrained,
                                                   **args)
        self._mixer = make_mixer(self.mix, hp.num_classes)
        if self.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)

    def set_channels_last(self, on: bool = True) -> FERClassifier:
        """Run the backbone and its inputs in the channels-last memory format (or back)."""
        self.channels_last = bool(on)
        self.backbone = self.backbone.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        return self

    def compile_backbone(self) -> FERClassifier:
        """Run the backbone through ``torch.compile`` (``nn.Module.compile``: the weights' names,
        checkpoints and DDP are unchanged; the first steps pay the compilation)."""
        self.backbone.compile()
        return self

    def setup(self, stage: str) -> None:
        cw = self.loss.class_weights
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
        if self.distill is not None and stage == "fit":
            from lightning_fer.models.distill import teacher_targets

            self.teacher_probs = teacher_targets(self.distill.teacher, self.class_names, self.data_fingerprint, dm)

    @property
    def region(self) -> str:
        return self.hparams.region or "face"

    def _input(self, batch: dict | torch.Tensor) -> torch.Tensor:
        x = batch["views"][:, 0] if isinstance(batch, dict) else batch
        return adapt_input(x, self.hparams.in_channels, self.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` for images ``[B, C, H, W]`` (the main head in training too)."""
        out = self.backbone(x)
        return out[0] if isinstance(out, tuple) else out

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Logits as ``validate``, ``test`` and ``predict`` see them (through :attr:`predict_runtime` where
        set): with ``tta: flip`` the library's flip rule (:func:`~.evaluation.flip_average`, a logit mean)."""
        net = self if self.predict_runtime is None else self.predict_runtime  # ONNX Runtime or int8 at predict
        if self.hparams.get("tta", "none") != "flip":
            return net(x)
        plain, mirrored = net(torch.cat([x, x.flip(-1)])).chunk(2)  # one pass over both: one batch of 2B
        return flip_average(plain, mirrored)

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Logits as the class probabilities the metrics take (softmax, float32)."""
        return scores.float().softmax(-1)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the samples whose view is real (``real`` ``[B]``; ``None``: all;
        :func:`~lightning_fer.models.mixing.masked_cross_entropy`); ``y`` may be mixed soft targets."""
        return masked_cross_entropy(logits, y, self.loss_weights.to(logits.device), self.loss.label_smoothing, real)

    def _main_loss(self, logits: torch.Tensor, batch: dict, y: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """The training loss of the main head: cross-entropy, or with a teacher the distillation
        loss (:func:`~lightning_fer.models.distill.distill_loss`; class weights do not apply)."""
        if self.teacher_probs is None:
            return self._loss(logits, y, real)
        from lightning_fer.models.distill import distill_loss

        t = self.teacher_probs.to(logits.device)[batch["index"].to(logits.device)]
        return distill_loss(logits, y, t, self.distill.weight, self.distill.temperature, self.loss.label_smoothing, real)

    @staticmethod
    def _real(batch: dict | torch.Tensor) -> torch.Tensor | None:
        """Which samples' view (the first of the batch's views) could be located."""
        mask = batch.get("view_mask") if isinstance(batch, dict) else None
        return None if mask is None else mask[:, 0].bool()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, y, real = self._input(batch), batch["label"], self._real(batch)
        target = y
        if self._mixer is not None and (real is None or bool(real.all())) and self.teacher_probs is None:
            if torch.rand(()) < self.mix.p:
                x, target = self._mixer(x, y)
        out = self.backbone(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = self._main_loss(logits, batch, target, real)
        if aux is not None:  # Inception V3: main + aux_weight * auxiliary
            loss = loss + self.loss.aux_weight * self._loss(aux, target, real)
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
        steps = max(int(self.trainer.estimated_stepping_batches), 1) if self.optim.scheduler != "none" else 1
        return optimizer_and_schedule(self.optim, self.parameters(), steps)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lightning_fer"] = {
            "class_names": self.class_names,
            "region": self.region,
            "backbone": {k: self.hparams[k] for k in ("backbone", "in_channels", "image_size", "backbone_args")},
            "data_fingerprint": self.data_fingerprint,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint of an earlier version: its options move into their groups and the backbone
        it names is built (Lightning built this model from the options it knew, before its weights
        load). Restoring into a model built for other classes (``test`` on another data set, whose
        classes the CLI linked in): the model takes the checkpoint's classes, and the data is
        matched to them by name when evaluation starts."""
        options, moved = current_options(checkpoint.get("hyper_parameters") or {})
        if moved:
            log.info("FERClassifier: checkpoint option(s) %s of an earlier version moved into their groups", moved)
            checkpoint["hyper_parameters"] = options
            self._migrate({k: v for k, v in options.items() if not k.startswith("_")})
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
        self.hparams.update(changes)
        self.configure_model_(weights=False)
        self.to(device)

    def _migrate(self, options: dict) -> None:
        """Take ``options`` (an older checkpoint's, in the current layout) as this model's, and
        build the backbone they name."""
        self.optim, self.loss = group(Optimization, options.get("optim")), group(Loss, options.get("loss"))
        self.mix = None if options.get("mix") is None else group(BatchMix, options["mix"])
        self.distill = None if options.get("distill") is None else group(Distillation, options["distill"])
        groups = {"optim": plain(self.optim), "loss": plain(self.loss), "mix": plain(self.mix),
                  "distill": plain(self.distill)}
        self._rebuild(**{**{k: v for k, v in options.items() if k in self.hparams}, **groups})

