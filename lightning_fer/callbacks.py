"""Callbacks: the pictures of a run (PNG files, and W&B when it logs), and weight averaging whose
checkpoints evaluate as averaged."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging as _LightningEMA
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from lightning_fer.plots import (
    per_class_precision_recall,
    plot_confusion,
    plot_learning_curves,
    plot_precision_recall,
)

log = logging.getLogger(__name__)


def _wandb_loggers(trainer: L.Trainer) -> list:
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


class FERPlots(L.Callback):
    """Confusion matrix and per-class precision / recall bars after validation (the last one
    is kept) and test, learning curves after fit; PNGs under ``<log dir>/plots`` (or
    ``dirpath``), and images plus a per-class table in W&B when a ``WandbLogger`` is attached.

    Args:
        dirpath: where the PNGs go (default: the first logger's ``log_dir``, else the trainer's
            ``default_root_dir``), in a ``plots`` folder.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self.history: dict[str, list[tuple[int, float]]] = {}

    def _dir(self, trainer: L.Trainer) -> Path:
        if self.dirpath:
            return Path(self.dirpath)
        base = trainer.loggers[0].log_dir if trainer.loggers and trainer.loggers[0].log_dir else trainer.default_root_dir
        return Path(base) / "plots"

    def _stage_pictures(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        conf = getattr(pl_module, "last_confusion", {}).get(stage)
        if conf is None or trainer.sanity_checking:
            return
        names = list(pl_module.class_names)
        out = self._dir(trainer)
        model = getattr(pl_module.hparams, "backbone", type(pl_module).__name__)
        epoch = trainer.current_epoch
        cm = plot_confusion(conf, names, f"{model}, {stage} (epoch {epoch})", out / f"confusion_{stage}.png")
        pr = plot_precision_recall(conf, names, f"{model}, {stage}: per-class precision and recall",
                                   out / f"precision_recall_{stage}.png")
        for lg in _wandb_loggers(trainer):
            precision, recall = per_class_precision_recall(conf)
            lg.log_image(key=f"{stage}/confusion_matrix", images=[str(cm)], step=trainer.global_step)
            lg.log_image(key=f"{stage}/precision_recall", images=[str(pr)], step=trainer.global_step)
            lg.log_table(
                key=f"{stage}/per_class",
                columns=["class", "precision", "recall", "support"],
                data=[[n, float(p), float(r), int(s)] for n, p, r, s in zip(names, precision, recall, conf.sum(1))],
                step=trainer.global_step,
            )

    # *_end, not *_epoch_end: Lightning calls callbacks' epoch-end hooks before the module's,
    # which is where the epoch's confusion matrix is computed.
    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stage_pictures(trainer, pl_module, "val")

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stage_pictures(trainer, pl_module, "test")

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after validation in the same epoch, so every epoch figure is here.
        for key, value in trainer.callback_metrics.items():
            if key.endswith(("loss", "loss_epoch", "acc")) and "/" in key and value.numel() == 1:
                self.history.setdefault(key, []).append((trainer.current_epoch, float(value)))

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.history:
            return
        model = getattr(pl_module.hparams, "backbone", type(pl_module).__name__)
        path = plot_learning_curves(self.history, f"{model}: learning curves", self._dir(trainer) / "learning_curves.png")
        for lg in _wandb_loggers(trainer):
            lg.log_image(key="learning_curves", images=[str(path)])


class EMAWeightAveraging(_LightningEMA):
    """Lightning's exponential moving average of the weights, evaluated as averaged.

    Checkpoints hold the averaged weights as their ``state_dict`` (the raw ones beside them,
    for resuming), as Lightning's callback writes them. Lightning's callback also loads the raw
    weights back whenever a checkpoint is restored in a trainer that has fitted, so ``fit`` then
    ``test(ckpt_path=...)`` in one process (``test_after_fit``) tested the raw weights. This one
    restores the raw weights only to resume training; ``validate``, ``test`` and ``predict`` see
    the average.

    Args:
        decay: the average's decay per optimiser step.
        update_starting_at_step, update_starting_at_epoch, update_every_n_steps, device,
        use_buffers: as Lightning's ``EMAWeightAveraging``.

    Example:
        >>> ema = EMAWeightAveraging(decay=0.999)
        >>> ema.should_update(step_idx=0)
        True
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return  # evaluation: the checkpoint's state_dict, the average, is already loaded
        super().on_load_checkpoint(trainer, pl_module, checkpoint)


class EpochTimer(L.Callback):
    """Log each training epoch's wall time as ``train/epoch_seconds`` (learning curves against
    time; a benchmark that shares its cores can take the median epoch instead of the total).

    Example:
        >>> EpochTimer().key
        'train/epoch_seconds'
    """

    key = "train/epoch_seconds"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log(self.key, time.perf_counter() - self._start, on_step=False, on_epoch=True, sync_dist=False)
