"""A strategy written by a library user, outside the package, used from YAML by class_path."""

from __future__ import annotations

import torch

from lightning_fer.ensemble import EnsembleStrategy


class MaxConfidence(EnsembleStrategy):
    """Follow the single most confident member-view (optionally only above a floor)."""

    def __init__(self, floor: float = 0.0) -> None:
        super().__init__()
        self.floor = floor

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        probs = self.flatten(logits.float().softmax(-1), mask)  # [B, E, C]
        conf = probs.max(-1).values
        conf = torch.where(conf >= self.floor, conf, torch.zeros_like(conf))
        best = conf.argmax(-1)
        return probs[torch.arange(len(probs)), best]


class BestMember(EnsembleStrategy):
    """Follow the member-view that was most accurate on the held-out data (a strategy that learns,
    written as the README says: ``requires_fit``, ``fit`` and ``combine``, nothing else)."""

    requires_fit = True

    def setup(self, num_members: int, num_views: int, num_classes: int) -> None:
        self.register_buffer("accuracy", torch.zeros(num_members, num_views))

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        real = self.sample_mask(mask, *logits.shape[:3])
        hits = (logits.argmax(-1) == labels[:, None, None]) & real  # [N, M, V]
        self.accuracy = hits.sum(0) / real.sum(0).clamp(min=1)

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        score = self.accuracy.to(logits.device).clone()
        if mask is not None:
            score[~mask.to(logits.device)] = -1.0
        m, v = divmod(int(score.argmax()), logits.shape[2])
        return logits[:, m, v].float().softmax(-1)
