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
