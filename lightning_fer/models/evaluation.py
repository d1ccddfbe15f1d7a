"""Evaluation metrics and hooks shared by every LightningModule of the library."""

from __future__ import annotations

import logging

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

log = logging.getLogger(__name__)

#: The label of an image whose class the model does not know (another data set's class):
#: every metric ignores it.
UNKNOWN_CLASS = -1


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, balanced accuracy, macro precision / recall / F1 (labels -1 ignored)."""
    kw = {"ignore_index": UNKNOWN_CLASS}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro", **kw),
            "balanced_acc": MulticlassAccuracy(num_classes, average="macro", **kw),
            "precision": MulticlassPrecision(num_classes, average="macro", **kw),
            "recall": MulticlassRecall(num_classes, average="macro", **kw),
            "f1": MulticlassF1Score(num_classes, average="macro", **kw),
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
            setattr(self, f"{stage}_f1_per_class", MulticlassF1Score(k, average=None, ignore_index=UNKNOWN_CLASS))
            setattr(self, f"{stage}_confusion", MulticlassConfusionMatrix(k, ignore_index=UNKNOWN_CLASS))
        self.last_confusion: dict[str, torch.Tensor] = {}

    def update_metrics(self, scores: torch.Tensor, y: torch.Tensor, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(scores, y)
        getattr(self, f"{stage}_f1_per_class").update(scores, y)
        getattr(self, f"{stage}_confusion").update(scores, y)
        self.log_dict(metrics, batch_size=max(len(y), 1))

    def _eval_epoch_end(self, stage: str) -> None:
        per_class = getattr(self, f"{stage}_f1_per_class")
        for name, value in zip(self.class_names, per_class.compute()):
            self.log(f"{stage}/f1_{name}", value)
        per_class.reset()
        conf = getattr(self, f"{stage}_confusion")
        self.last_confusion[stage] = conf.compute().cpu()
        conf.reset()

    def _match_data_classes(self) -> None:
        """Evaluating on data with other classes (another data set): relabel it by class name."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None and hasattr(dm, "match_classes"):
            dm.match_classes(self.class_names)

    def on_validation_start(self) -> None:
        self._match_data_classes()

    def on_test_start(self) -> None:
        self._match_data_classes()

    def on_predict_start(self) -> None:
        self._match_data_classes()
        self._warn_if_demo_model()

    def _warn_if_demo_model(self) -> None:
        """Photos judged by a model that only ever saw the synthetic demo faces deserve a word."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or getattr(dm, "photos", None) is None:
            return
        members = getattr(self, "members", None) or [self]
        prints = [getattr(m, "data_fingerprint", None) or {} for m in members]
        if any(str(fp.get("source", "")).startswith("SyntheticSource(") for fp in prints):
            log.warning(
                "this model was trained on the synthetic demo faces only, never on a real face: its labels for "
                "photos say little. Train on real faces first (e.g. configs/fer2013/resnet18.yaml)"
            )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
