"""Option groups as the modules store them: plain values in hyperparameters and checkpoints.

The groups (``landmarks``, ``training``, ``predict`` on the data module; ``optim``, ``mix``,
``distill`` on the classifier) are dataclasses that jsonargparse types and checks. Checkpoints
hold them as plain mappings, so that they load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with dataclasses (and parsed namespaces) as dicts and tuples as lists, recursively.

    Example:
        >>> from lightning_fer.data.detection import LandmarkSettings
        >>> plain(LandmarkSettings(mode="template"))["thresholds"]
        [0.6, 0.7, 0.7]
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "__dict__") and type(value).__name__ == "Namespace":
        return {k: plain(v) for k, v in vars(value).items()}
    return value


def group(cls, value: Any):
    """An instance of the option group ``cls`` from ``value``: an instance, a mapping (as saved
    in a checkpoint) or ``None`` (the defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    return cls(**{f.name: getattr(value, f.name) for f in dataclasses.fields(cls) if hasattr(value, f.name)})


class OptionError(ValueError):
    """A value a user gave an option that it cannot take: the message names the option (as typed on
    the command line) and what it takes; the command line says it in one line."""
