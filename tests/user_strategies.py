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


class GrowingPrior(EnsembleStrategy):
    """Learns the class shares of the held-out labels: a buffer registered empty and assigned a
    tensor of a new shape in ``fit`` (the README's pattern for learnt state)."""

    requires_fit = True

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("prior", torch.zeros(0))

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.prior = torch.bincount(labels, minlength=logits.shape[-1]).float() / len(labels)

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return (logits.float().softmax(-1).mean((1, 2)) + self.prior.to(logits.device)) / 2


class AccuracyWeighted(EnsembleStrategy):
    """Written against the 0.1 contract: ``self.flatten(logits, mask)`` inside ``fit``, and a
    weight per real member-view learnt there."""

    requires_fit = True

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weights", torch.zeros(0))

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        flat = self.flatten(logits, mask)  # [N, E, C]
        self.weights = (flat.argmax(-1) == labels[:, None]).float().mean(0) + 1e-3

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        flat = self.flatten(logits.float().softmax(-1), mask)
        return (flat * self.weights.to(flat.device)[None, :, None]).sum(1) / self.weights.sum()


class NamedLikeAMember(MaxConfidence):
    """A user's strategy whose table name is a member's (``sppnet``, or an expert's such as
    ``resnet50@mouth``): Table II must still file it as a strategy."""

    def __init__(self, row_name: str = "sppnet", floor: float = 0.0) -> None:
        super().__init__(floor)
        self.row_name = row_name

    @property
    def name(self) -> str:
        return self.row_name
