"""Mixup and CutMix on training batches (an option group of :class:`~lightning_fer.models.FERClassifier`), and the
cross-entropy that takes their soft targets and per-sample masks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


def make_mixer(mix: BatchMix | dict | None, num_classes: int):
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


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, label_smoothing: float,
                         real: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the samples whose view is real (``real`` ``[B]``; ``None``: all).

    Samples whose view could not be located add nothing, and a batch without any gives a zero
    loss that still takes part in the step (so that DDP processes stay in step). ``y`` is
    ``[B]`` class indices or ``[B, C]`` mixed soft targets (mixup / CutMix: every sample real).

    Example:
        >>> z, y = torch.zeros(2, 3), torch.tensor([0, 2])
        >>> round(float(masked_cross_entropy(z, y, torch.ones(3), 0.0, torch.tensor([True, False]))), 4)
        1.0986
    """
    if y.ndim == 2 or real is None or bool(real.all()):
        return F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=label_smoothing)
    per = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=label_smoothing, reduction="none")
    keep = real.to(per.dtype)
    # As the weighted mean cross_entropy computes: divided by the summed class weights.
    return (per * keep).sum() / (weight[y] * keep).sum().clamp(min=1e-12)
