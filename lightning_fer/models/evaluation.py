"""Evaluation metrics and hooks shared by every LightningModule of the library."""

from __future__ import annotations

import logging

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

log = logging.getLogger(__name__)

#: The label of an image whose class the model does not know (another data set's class):
#: every metric ignores it.
UNKNOWN_CLASS = -1
#: The probability floor of the negative log-likelihood: a hard vote gives a class no vote
#: at all, which would otherwise be an infinite loss.
NLL_FLOOR = 1e-4
#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 15


def flip_average(plain: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """The library's one flip rule for a model (test-time augmentation): the mean of the logits of
    a face and of its mirror. A model's ``tta: flip`` and ``cv``'s ``+ flip`` rows use it; in an
    ensemble the mirror is one more view (``face_flip``) that the strategy combines as it combines
    views. On the shipped fer2013 (3,549 PublicTest faces) the logit mean gave 67.51%, the mean of
    probabilities 67.03%, no flip 66.02%.

    Example:
        >>> flip_average(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])).tolist()
        [[1.0, 0.5]]
    """
    return (plain.float() + mirrored.float()) / 2


def to_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """Class scores as probabilities: clipped at 0 and renormalised (a hard vote's vote shares,
    a strategy's scores), float32. Softmax outputs pass through unchanged.

    Example:
        >>> to_probabilities(torch.tensor([[2.0, 2.0, 0.0], [-1.0, 1.0, 0.0]])).tolist()
        [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]
    """
    p = scores.float().clamp(min=0)
    return p / p.sum(-1, keepdim=True).clamp(min=1e-12)


class NegativeLogLikelihood(Metric):
    """Mean ``-log p(true class)`` over the samples, probabilities floored at ``floor``
    (labels ``ignore_index`` left out); synced across processes like every torchmetrics metric."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, floor: float = NLL_FLOOR, ignore_index: int = UNKNOWN_CLASS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.floor, self.ignore_index = floor, ignore_index
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != self.ignore_index
        p = probs[keep].float().gather(1, target[keep, None]).clamp(min=self.floor)
        self.total += -p.log().sum().double()
        self.count += int(keep.sum())

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


def classification_metrics(num_classes: int) -> MetricCollection:
    """The one set of figures ``validate``, ``test``, ``cv`` and Table II report, from class
    probabilities (:func:`to_probabilities`): accuracy, balanced accuracy, macro precision /
    recall / F1, the expected calibration error (:data:`ECE_BINS` bins, L1) and the negative
    log-likelihood (floored at :data:`NLL_FLOOR`); labels -1 ignored."""
    kw = {"ignore_index": UNKNOWN_CLASS}
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro", **kw),
            "balanced_acc": MulticlassAccuracy(num_classes, average="macro", **kw),
            "precision": MulticlassPrecision(num_classes, average="macro", **kw),
            "recall": MulticlassRecall(num_classes, average="macro", **kw),
            "f1": MulticlassF1Score(num_classes, average="macro", **kw),
            "ece": MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1", **kw),
            "nll": NegativeLogLikelihood(),
        }
    )


def score(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """:func:`classification_metrics` of one set of predictions, as floats.

    Example:
        >>> s = score(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]), 3)
        >>> round(s["acc"], 3), round(s["balanced_acc"], 3), round(s["precision"], 3), round(s["ece"], 3)
        (0.667, 0.667, 0.5, 0.333)
    """
    metrics = classification_metrics(num_classes)
    probs, labels = known(to_probabilities(probs), labels)
    if not labels.numel():  # no face of a class the model knows: nothing to score
        return dict.fromkeys(metrics.keys(), float("nan"))
    metrics.update(probs, labels)
    return {k: float(v) for k, v in metrics.compute().items()}


def known(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose label is a class the model knows (not :data:`UNKNOWN_CLASS`): torchmetrics
    cannot update on a batch whose every label is ignored, so such rows are left out here, and a
    batch of only unknown labels (another data set's class, sorted together) updates nothing."""
    keep = y != UNKNOWN_CLASS
    return (scores, y) if bool(keep.all()) else (scores[keep], y[keep])


class EvaluationMixin:
    """Val and test metrics (torchmetrics objects, so DDP gives global figures), per-class F1,
    confusion matrices kept in ``last_confusion[stage]``, and the step hooks. A module calls
    :meth:`configure_metrics` in ``__init__`` and implements ``_eval_step(batch, stage)``, which
    calls :meth:`update_metrics`."""

    class_names: list[str]

    #: What ``predict`` runs the network through, a callable on a batch of inputs: ONNX Runtime or
    #: int8 (:class:`~lightning_fer.predict.runtimes.OrtRunner`, set for a run by
    #: :func:`~lightning_fer.predict.runtimes.running`); ``None``: the module's own ``forward``.
    predict_runtime = None

    def configure_metrics(self) -> None:
        k = len(self.class_names)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", classification_metrics(k).clone(prefix=f"{stage}/"))
            setattr(self, f"{stage}_f1_per_class", MulticlassF1Score(k, average=None, ignore_index=UNKNOWN_CLASS))
            setattr(self, f"{stage}_confusion", MulticlassConfusionMatrix(k, ignore_index=UNKNOWN_CLASS))
        self.last_confusion: dict[str, torch.Tensor] = {}

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """What :meth:`update_metrics` is given, as class probabilities (a strategy's scores:
        :func:`to_probabilities`; a classifier overrides this with the softmax of its logits)."""
        return to_probabilities(scores)

    def update_metrics(self, scores: torch.Tensor, y: torch.Tensor, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        scores, y = known(self.probabilities(scores), y)
        if not y.numel():
            return
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
