"""The strategy contract users subclass: :class:`EnsembleStrategy` (combine, optional fit, saved state).

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
from typing import ClassVar

import torch
from torch import nn

from lightning_fer.ensemble.functional import exporting


def _record_init_args(init):
    """Wrap a subclass's ``__init__`` so that the instance remembers how it was made (the
    ensemble's checkpoint makes it again from that): the most derived ``__init__`` returns last,
    so its arguments win."""

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        bound = inspect.signature(init).bind(self, *args, **kwargs)
        bound.apply_defaults()
        params = inspect.signature(init).parameters
        args_ = {k: v for k, v in list(bound.arguments.items())[1:] if params[k].kind not in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
        object.__setattr__(self, "init_args", args_)

    wrapped._records_init_args = True  # type: ignore[attr-defined]
    return wrapped


def _marking_fit(fit):
    """Wrap a subclass's ``fit``: a per-sample mask that every sample shares is passed as the one
    ``[M, V]`` mask ``combine`` sees, and the base records that the strategy is fitted when
    ``fit`` returns (as torchmetrics' ``Metric`` wraps ``update``)."""

    @functools.wraps(fit)
    def wrapped(self, logits, labels, mask=None, *args, **kwargs):
        out = fit(self, logits, labels, _shared_mask(mask), *args, **kwargs)
        self._fitted.fill_(True)
        return out

    wrapped._marks_fitted = True  # type: ignore[attr-defined]
    return wrapped


def _shared_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """``[N, M, V]`` whose rows are all equal -> that ``[M, V]`` row; anything else unchanged."""
    if mask is None or mask.ndim != 3 or len(mask) == 0:
        return mask
    first = mask[0]
    return first if bool((mask == first).all()) else mask


class EnsembleStrategy(nn.Module):
    """Base class of ensemble strategies.

    Subclasses implement :meth:`combine`. A strategy that learns sets ``requires_fit = True``
    and implements :meth:`fit`, which the ensemble calls with predictions on held-out data (never
    on samples a member was trained on: the ensemble checks the members' data fingerprints
    first). The base class owns the rest: it records that ``fit`` returned (:attr:`is_fitted`),
    saves that, with whatever the strategy registered as parameters or buffers, in the
    ensemble's checkpoint, refuses to combine before fitting, and splits a batch whose samples
    have different masks into groups, so that :meth:`combine` always sees one ``[M, V]`` mask;
    :meth:`fit` sees that ``[M, V]`` mask too when every held-out sample shares it (else the
    per-sample ``[N, M, V]``). Learnt state may be assigned in ``fit`` as a new tensor of any
    shape (``self.prior = ...`` on a registered buffer): a fresh instance takes the saved shape
    when it loads the checkpoint. No metaclass: ``__init_subclass__`` wraps a subclass's
    ``__init__`` (to remember its arguments) and ``fit``.

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
        >>> fresh = Prior(); _ = fresh.load_state_dict(s.state_dict()); fresh(torch.randn(1, 1, 1, 2))
        tensor([[0.2500, 0.7500]])
    """

    requires_fit: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        init, fit = cls.__dict__.get("__init__"), cls.__dict__.get("fit")
        if init is not None and not getattr(init, "_records_init_args", False):
            cls.__init__ = _record_init_args(init)
        if fit is not None and not getattr(fit, "_marks_fitted", False):
            cls.fit = _marking_fit(fit)

    def __init__(self) -> None:
        if type(self).combine is EnsembleStrategy.combine:
            raise TypeError(f"can't instantiate abstract strategy {type(self).__name__}: it must implement "
                            "combine(logits, mask)")
        super().__init__()
        self.register_buffer("_fitted", torch.tensor(False))
        if not hasattr(self, "init_args"):
            object.__setattr__(self, "init_args", {})

    def setup(self, num_members: int, num_views: int, num_classes: int) -> None:
        """Called once by the ensemble when its shape is known (build learnable parts here)."""

    def combine(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Combine ``logits`` ``[B, M, V, C]`` into scores ``[B, C]``; ``mask`` is ``[M, V]``."""
        raise NotImplementedError

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
        self._take_saved_shapes(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _take_saved_shapes(self, state_dict: dict, prefix: str) -> None:
        """Resize this strategy's buffers and parameters, and its plain submodules' (a nested
        strategy does this itself), to the shapes saved, so that state learnt with a new shape
        in ``fit`` reloads into a fresh instance."""
        todo = [(self, prefix)]
        while todo:
            module, base = todo.pop()
            for store, make in ((module._buffers, lambda t, old: t), (module._parameters, nn.Parameter)):
                for name, old in list(store.items()):
                    saved = state_dict.get(base + name)
                    if old is not None and isinstance(saved, torch.Tensor) and saved.shape != old.shape:
                        fresh = torch.empty(saved.shape, dtype=old.dtype, device=old.device)
                        store[name] = fresh if store is module._buffers else make(fresh, old.requires_grad)
            todo += [(child, f"{base}{name}.") for name, child in module._modules.items()
                     if child is not None and not isinstance(child, EnsembleStrategy)]

    @staticmethod
    def flatten(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, M, V, ...]`` -> ``[B, E, ...]``, keeping only the real member-view pairs of an
        ``[M, V]`` mask (a per-sample ``[B, M, V]`` mask that every sample shares counts as that
        ``[M, V]``; one that varies has no single ``E``, and is refused)."""
        b, m, v = x.shape[:3]
        flat = x.reshape(b, m * v, *x.shape[3:])
        if mask is None:
            return flat
        mask = _shared_mask(mask)
        if mask.ndim == 3:
            raise ValueError("flatten takes one [M, V] mask, and these samples have different ones: use "
                             "self.sample_mask(mask, N, M, V) and weigh each sample's member-views instead")
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
