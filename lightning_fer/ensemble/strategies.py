"""The built-in strategies: :class:`HardVote` (the paper's Eq. 8), :class:`SoftVote` (optionally calibrated) and :class:`Stacking`."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_fer.ensemble.functional import TieBreak, ensemble_selection, hard_vote, soft_vote
from lightning_fer.ensemble.strategy import EnsembleStrategy, strategy_from_spec

__all__ = ["EnsembleSelection", "EnsembleStrategy", "HardVote", "SoftVote", "Stacking", "strategy_from_spec"]


class HardVote(EnsembleStrategy):
    """Majority vote of every member on every view: the paper's Eq. 8 with regions as views.

    Args:
        weights: vote weight per member (M values) or per member-view (M*V values).
        tie_break: ``probability`` (the tied class with the highest summed probability) or
            ``lowest`` (the lowest class index, as scikit-learn's ``VotingClassifier``).

    Example:
        >>> HardVote()(torch.randn(2, 3, 5, 7)).shape
        torch.Size([2, 7])
    """

    def __init__(self, weights: list[float] | None = None, tie_break: TieBreak = "probability") -> None:
        super().__init__()
        self.weights = weights
        self.tie_break = tie_break

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _, m, v, _ = logits.shape
        w = self._voter_weights(self.weights, m, v, mask, logits.device)
        return hard_vote(self.flatten(logits, mask), w, self.tie_break)


class SoftVote(EnsembleStrategy):
    """(Weighted) mean of probabilities, optionally after per-member temperature calibration
    fitted on held-out data (Guo et al., 2017).

    Args:
        weights: weight per member (M values) or per member-view (M*V values).
        calibrate: fit one temperature per member on held-out predictions first.
        max_iter: LBFGS iterations of the calibration.

    Example:
        >>> probs = SoftVote()(torch.randn(2, 3, 5, 7))
        >>> probs.shape, bool(torch.allclose(probs.sum(-1), torch.ones(2)))
        (torch.Size([2, 7]), True)
    """

    def __init__(self, weights: list[float] | None = None, calibrate: bool = False, max_iter: int = 100) -> None:
        super().__init__()
        self.weights = weights
        self.calibrate = calibrate
        self.max_iter = max_iter
        self.log_temperature = nn.Parameter(torch.zeros(0), requires_grad=False)

    @property
    def requires_fit(self) -> bool:  # type: ignore[override]
        return self.calibrate

    def setup(self, num_members: int, num_views: int, num_classes: int) -> None:
        self.log_temperature = nn.Parameter(torch.zeros(num_members), requires_grad=False)

    @property
    def name(self) -> str:
        return "SoftVote (calibrated)" if self.calibrate else "SoftVote"

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, m, v, c = logits.shape
        w = self._voter_weights(self.weights, m, v, mask, logits.device)
        t = None
        if self.calibrate and self.log_temperature.numel() == m:
            t = self.flatten(self.temperature.to(logits.device)[None, :, None].expand(1, m, v), mask)[0]
        return soft_vote(self.flatten(logits, mask), w, t)

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if not self.calibrate:
            return
        n, m, v, c = logits.shape
        if self.log_temperature.numel() != m:
            self.setup(m, v, c)
        with torch.inference_mode(False), torch.enable_grad():
            out = self._fit_temperatures(logits.detach().float().cpu().clone(), labels.cpu().clone(), mask)
        with torch.no_grad():
            self.log_temperature.copy_(out.to(self.log_temperature.device))

    def _fit_temperatures(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, m, v, c = x.shape
        real = self.sample_mask(mask, n, m, v, "cpu")
        out = torch.zeros(m)
        for i in range(m):
            z = x[:, i][real[:, i]]  # [K, C]: every view this member saw, sample by sample
            yy = y[:, None].expand(n, v)[real[:, i]]
            log_t = torch.zeros(1, requires_grad=True)
            opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=self.max_iter)

            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(z / log_t.exp(), yy)
                loss.backward()
                return loss

            opt.step(closure)
            out[i] = log_t.detach()[0]
        return out


class Stacking(EnsembleStrategy):
    """A meta-learner on the members' out-of-fold predictions.

    Features are every member-view's probabilities (or logits), flattened; the default
    meta-learner is multinomial logistic regression (a linear layer trained by LBFGS with an L2
    penalty). Any ``nn.Module`` mapping ``[N, features]`` to ``[N, C]`` can replace it. The
    ensemble refuses to fit it on predictions for samples a member was trained on.

    Args:
        meta_learner: the model on the features (default: logistic regression).
        features: ``probs`` or ``logits``.
        l2: L2 penalty of the default meta-learner.
        max_iter: training iterations (LBFGS for the default, Adam steps otherwise).

    Example:
        >>> s = Stacking(); s.setup(2, 1, 3)
        >>> logits = torch.randn(60, 2, 1, 3); labels = logits[:, 0, 0].argmax(-1)
        >>> s.fit(logits, labels); s(logits).shape
        torch.Size([60, 3])
    """

    requires_fit: ClassVar[bool] = True

    def __init__(
        self,
        meta_learner: nn.Module | None = None,
        features: Literal["probs", "logits"] = "probs",
        l2: float = 1e-3,
        max_iter: int = 200,
    ) -> None:
        super().__init__()
        self.meta_learner = meta_learner
        self.features = features
        self.l2 = l2
        self.max_iter = max_iter
        self._default = meta_learner is None

    def setup(self, num_members: int, num_views: int, num_classes: int) -> None:
        if self._default:
            # Multinomial logistic regression, started from zero: its loss is convex, so the same
            # held-out logits give the same strategy whatever the random state (cv and test agree).
            self.meta_learner = nn.Linear(num_members * num_views * num_classes, num_classes)
            nn.init.zeros_(self.meta_learner.weight)
            nn.init.zeros_(self.meta_learner.bias)

    def _features(self, logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = logits.float()
        x = x.softmax(-1) if self.features == "probs" else x
        if mask is not None:  # keep positions fixed: zero the pairs that do not exist
            x = x * self.sample_mask(mask, *x.shape[:3], x.device)[..., None]
        return x.flatten(1)

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.meta_learner is None:
            raise RuntimeError("Stacking.setup() was not called")
        return self.meta_learner(self._features(logits, mask)).softmax(-1)

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        if self.meta_learner is None:
            self.setup(*logits.shape[1:])
        device = next(self.meta_learner.parameters()).device
        params = [p for p in self.meta_learner.parameters()]
        self.meta_learner.train()
        # Fitting may be called from validate/test, which run under inference mode.
        with torch.inference_mode(False), torch.enable_grad():
            x = self._features(logits.detach().clone(), mask).to(device)
            y = labels.clone().to(device)
            if self._default:
                opt = torch.optim.LBFGS(params, lr=1, max_iter=self.max_iter, line_search_fn="strong_wolfe")

                def closure():
                    opt.zero_grad()
                    loss = F.cross_entropy(self.meta_learner(x), y) + self.l2 * self.meta_learner.weight.pow(2).sum()
                    loss.backward()
                    return loss

                opt.step(closure)
            else:
                opt = torch.optim.Adam(params, lr=1e-2, weight_decay=self.l2)
                for _ in range(self.max_iter):
                    opt.zero_grad()
                    F.cross_entropy(self.meta_learner(x), y).backward()
                    opt.step()
        self.meta_learner.eval()


class EnsembleSelection(EnsembleStrategy):
    """Ensemble selection (Caruana et al., 2004): greedy forward selection with replacement of
    member-views on held-out predictions (:func:`~lightning_fer.ensemble.functional.ensemble_selection`),
    then a soft vote weighted by how often each was chosen. A member-view chosen twice votes
    twice; one never chosen does not vote.

    Args:
        rounds: how many member-views are added (with repetition).

    Example:
        >>> s = EnsembleSelection(rounds=2)
        >>> logits = torch.tensor([[[[2.2, 0.0]], [[0.4, 0.0]]], [[[0.0, 0.4]], [[0.0, 2.2]]]])  # [N, M, V, C]
        >>> s.fit(logits, torch.tensor([0, 1])); s.counts.tolist()  # both right; together surer
        [1.0, 1.0]
        >>> s(logits).argmax(-1).tolist()
        [0, 1]
    """

    requires_fit = True

    def __init__(self, rounds: int = 25) -> None:
        super().__init__()
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        self.rounds = rounds
        self.register_buffer("counts", torch.zeros(0))

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        n, m, v, c = logits.shape
        real = self.sample_mask(mask, n, m, v, logits.device).reshape(n, m * v)
        probs = logits.float().softmax(-1).reshape(n, m * v, c)
        self.counts = ensemble_selection(probs, labels.to(logits.device), self.rounds, real)

    @property
    def weights(self) -> torch.Tensor:
        """``[M * V]`` the share of the rounds each member-view was chosen."""
        return self.counts / self.counts.sum().clamp(min=1)

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        w = self.counts.to(logits.device)
        if mask is not None:
            w = w[mask.reshape(-1).to(logits.device)]
        flat = self.flatten(logits, mask)
        if not bool(w.sum() > 0):  # none of the chosen member-views saw these samples
            w = torch.ones_like(w)
        return soft_vote(flat, w)
