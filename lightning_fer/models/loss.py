"""The classifier's ``loss`` option group: what its cross-entropy weighs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Loss:
    """How :class:`~lightning_fer.FERClassifier` weighs its training loss
    (``--model.loss.label_smoothing=0.1``; a teacher's term is the ``distill`` group's).

    Args:
        label_smoothing: cross-entropy label smoothing.
        class_weights: ``None``, ``balanced`` (n / (k * count) on the training split) or one
            weight per class.
        aux_weight: weight of Inception V3's auxiliary loss (the paper's 0.4).

    Example:
        >>> Loss(label_smoothing=0.1).aux_weight
        0.4
    """

    label_smoothing: float = 0.0
    class_weights: Literal["balanced"] | list[float] | None = None
    aux_weight: float = 0.4

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0 or self.aux_weight < 0:
            raise ValueError(f"loss.label_smoothing must be in [0, 1) and loss.aux_weight >= 0, got "
                             f"{self.label_smoothing}, {self.aux_weight}")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise ValueError(f"loss.class_weights {self.class_weights!r}: 'balanced', one weight per class, or null")
