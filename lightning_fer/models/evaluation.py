"""Evaluation metrics and hooks shared by every LightningModule of the library."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, balanced accuracy, macro precision / recall / F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_acc": MulticlassAccuracy(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
    )


class EvaluationMixin:
    """Val and test metrics (torchmetrics objects, so DDP gives global figures), per-class F1,
    confusion matrices kept in ``last_confusion[stage]``, and the step hooks. A module calls
    :meth:`configure_metrics` in ``__init__`` and implements ``_eval_step(batch, stage)``, which
    calls :meth:`update_metrics`."""

    class_names: list[str]

    def configure_metrics(self) -> None:
        k = len(self.class_names)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", classification_metrics(k).clone(prefix=f"{stage}/"))
            setattr(self, f"{stage}_f1_per_class", MulticlassF1Score(k, average=None))
            setattr(self, f"{stage}_confusion", MulticlassConfusionMatrix(k))
        self.last_confusion: dict[str, torch.Tensor] = {}

    def update_metrics(self, scores: torch.Tensor, y: torch.Tensor, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(scores, y)
        getattr(self, f"{stage}_f1_per_class").update(scores, y)
        getattr(self, f"{stage}_confusion").update(scores, y)
        self.log_dict(metrics, batch_size=len(y))

    def _eval_epoch_end(self, stage: str) -> None:
        per_class = getattr(self, f"{stage}_f1_per_class")
        for name, value in zip(self.class_names, per_class.compute()):
            self.log(f"{stage}/f1_{name}", value)
        per_class.reset()
        conf = getattr(self, f"{stage}_confusion")
        self.last_confusion[stage] = conf.compute().cpu()
        conf.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
