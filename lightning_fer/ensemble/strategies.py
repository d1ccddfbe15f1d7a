"""Ensemble strategies: the small contract users subclass, and the built-in ones.

A strategy turns member logits ``[B, M, V, C]`` (batch, members, views, classes) into class
scores ``[B, C]``. A boolean ``mask`` says which member-view pairs are real: ``[M, V]`` (a region
expert sees only its region) or, per sample, ``[B, M, V]`` (a part that could not be located on
that face is missing). Masked pairs carry no information and get no vote. Strategies are
``nn.Module``s so that what they learn is saved in the ensemble's checkpoint.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from abc import ABCMeta, abstractmethod
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_fer.ensemble.functional import TieBreak, exporting, hard_vote, soft_vote


class _StrategyMeta(ABCMeta):
    """Wraps each subclass's ``fit`` so that the base class records, when it returns, that the
    strategy is fitted (as torchmetrics' ``Metric`` wraps ``update``): a subclass never sets a
    flag itself."""

    def __new__(mcs, name, bases, namespace, **kwargs):
        fit = namespace.get("fit")
        if fit is not None and not getattr(fit, "_marks_fitted", False):

            @functools.wraps(fit)
            def wrapped(self, *args, **kw):
                out = fit(self, *args, **kw)
                self._fitted.fill_(True)
                return out

            wrapped._marks_fitted = True  # type: ignore[attr-defined]
            namespace["fit"] = wrapped
        return super().__new__(mcs, name, bases, namespace, **kwargs)

    def __call__(cls, *args, **kwargs):
        # Remember how the strategy was made, so that the ensemble's checkpoint can make it again.
        obj = super().__call__(*args, **kwargs)
        bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        bound.apply_defaults()
        obj.init_args = {k: v for k, v in list(bound.arguments.items())[1:] if k not in ("args", "kwargs")}
        return obj


class EnsembleStrategy(nn.Module, metaclass=_StrategyMeta):
    """Base class of ensemble strategies.

    Subclasses implement :meth:`combine`. A strategy that learns sets ``requires_fit = True``
    and implements :meth:`fit`, which the ensemble calls with predictions on held-out data (never
    on samples a member was trained on: the ensemble checks the members' data fingerprints
    first). The base class owns the rest: it records that ``fit`` returned (:attr:`is_fitted`),
    saves that, with whatever the strategy registered as parameters or buffers, in the
    ensemble's checkpoint, refuses to combine before fitting, and splits a batch whose samples
    have different masks into groups, so that :meth:`combine` always sees one ``[M, V]`` mask.

    Attributes:
        requires_fit: the strategy must see held-out predictions before it can combine.

    Example:
        >>> class MaxConfidence(EnsembleStrategy):
        ...     "Follow the single most confident member-view."
        ...     def combine(self, logits, mask=None):
        ...         probs = self.flatten(logits.softmax(-1), mask)  # [B, E, C]
        ...         best = probs.max(-1).values.argmax(-1)  # [B]
        ...         return probs[torch.arange(len(probs)), best]
        >>> MaxConfidence()(torch.randn(4, 3, 5, 7)).shape
        torch.Size([4, 7])
        >>> class Prior(EnsembleStrategy):
        ...     "Learns the class shares of the held-out labels, and predicts them."
        ...     requires_fit = True
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.register_buffer("prior", torch.zeros(0))
        ...     def fit(self, logits, labels, mask=None):
        ...         self.prior = torch.bincount(labels, minlength=logits.shape[-1]).float() / len(labels)
        ...     def combine(self, logits, mask=None):
        ...         return self.prior.expand(len(logits), -1)
        >>> s = Prior(); s.is_fitted
        False
        >>> s.fit(torch.randn(4, 1, 1, 2), torch.tensor([0, 1, 1, 1])); s.is_fitted
        True
        >>> s(torch.randn(1, 1, 1, 2))
        tensor([[0.2500, 0.7500]])
    """

    requires_fit: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_fitted", torch.tensor(False))

    def setup(self, num_members: int, num_views: int, num_classes: int) -> None:
        """Called once by the ensemble when its shape is known (build learnable parts here)."""

    @abstractmethod
    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Combine ``logits`` ``[B, M, V, C]`` into scores ``[B, C]``; ``mask`` is ``[M, V]``."""

    def fit(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Learn from held-out ``logits`` ``[N, M, V, C]`` and ``labels`` ``[N]``; ``mask`` is
        ``[N, M, V]`` (or ``[M, V]``), the real member-views of each sample."""

    @property
    def name(self) -> str:
        """A short label for tables."""
        return type(self).__name__

    def spec(self) -> dict:
        """``{"class_path", "init_args"}``: what :func:`strategy_from_spec` makes it again from
        (the ensemble's checkpoint keeps it; learnt state is in the state dict)."""
        cls = type(self)
        args = {k: v.spec() if isinstance(v, EnsembleStrategy) else v for k, v in getattr(self, "init_args", {}).items()}
        bad = [k for k, v in args.items() if isinstance(v, nn.Module)]
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": args, "unsaved": bad}

    @property
    def is_fitted(self) -> bool:
        """Whether the strategy can combine: it does not learn, or its ``fit`` has returned
        (also in an earlier process, when loaded from the ensemble's checkpoint)."""
        return not self.requires_fit or bool(self._fitted)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if logits.ndim != 4:
            raise ValueError(f"strategies take logits [batch, members, views, classes], got {tuple(logits.shape)}")
        if not exporting() and not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} must be fitted on held-out predictions before use")
        if mask is None or mask.ndim == 2:
            return self.combine(logits, mask)
        if tuple(mask.shape) != tuple(logits.shape[:3]):
            raise ValueError(f"mask {tuple(mask.shape)} does not fit logits {tuple(logits.shape)}: give [M, V] or [B, M, V]")
        b, m, v = mask.shape
        patterns, group = torch.unique(mask.reshape(b, m * v).bool(), dim=0, return_inverse=True)
        if len(patterns) == 1:
            return self.combine(logits, patterns[0].reshape(m, v))
        out: torch.Tensor | None = None
        for k, pattern in enumerate(patterns):
            rows = (group == k).nonzero().squeeze(1)
            scores = self.combine(logits[rows], pattern.reshape(m, v))
            if out is None:
                out = scores.new_zeros(b, *scores.shape[1:])
            out[rows] = scores
        return out  # type: ignore[return-value]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the base class owned the fitted state lack it for
        # strategies that never learn: keep the current value rather than fail to load.
        state_dict.setdefault(prefix + "_fitted", self._fitted.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def flatten(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, M, V, ...]`` -> ``[B, E, ...]``, keeping only the real member-view pairs of an
        ``[M, V]`` mask."""
        b, m, v = x.shape[:3]
        flat = x.reshape(b, m * v, *x.shape[3:])
        if mask is None:
            return flat
        return flat[:, mask.reshape(-1).to(flat.device)]

    @staticmethod
    def sample_mask(mask: torch.Tensor | None, n: int, m: int, v: int, device=None) -> torch.Tensor:
        """Any mask (``None``, ``[M, V]`` or ``[N, M, V]``) as ``[N, M, V]`` booleans."""
        if mask is None:
            return torch.ones(n, m, v, dtype=torch.bool, device=device)
        mask = mask.to(device=device, dtype=torch.bool)
        return mask[None].expand(n, m, v) if mask.ndim == 2 else mask

    def _voter_weights(self, weights, m: int, v: int, mask: torch.Tensor | None, device) -> torch.Tensor | None:
        """Weights per member (M values) or per member-view (M*V values), restricted to the mask."""
        if weights is None:
            return None
        w = torch.as_tensor(weights, dtype=torch.float32, device=device)
        if w.numel() == m:
            w = w[:, None].expand(m, v)
        elif w.numel() != m * v:
            raise ValueError(f"weights: {w.numel()} values for {m} members x {v} views; give {m} or {m * v}")
        w = w.reshape(-1)
        return w if mask is None else w[mask.reshape(-1).to(device)]


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
            self.meta_learner = nn.Linear(num_members * num_views * num_classes, num_classes)

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


def strategy_from_spec(spec: dict) -> EnsembleStrategy:
    """Make a strategy again from :meth:`EnsembleStrategy.spec` (a class path is imported, and
    must name an :class:`EnsembleStrategy`, as LightningCLI's ``class_path`` does)."""
    path = spec["class_path"]
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"the checkpoint's strategy {path} cannot be imported ({err}); put its module on PYTHONPATH "
                          "or pass strategy= when loading") from None
    if not (isinstance(cls, type) and issubclass(cls, EnsembleStrategy)):
        raise TypeError(f"the checkpoint's strategy {path} is not an EnsembleStrategy")
    if spec.get("unsaved"):
        raise ValueError(f"the checkpoint's {path} was made with {spec['unsaved']} (modules), which a checkpoint "
                         "cannot describe: pass strategy= when loading")
    return cls(**spec.get("init_args", {}))
