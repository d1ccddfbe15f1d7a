"""The optimiser and learning-rate schedule of a :class:`~lightning_fer.models.FERClassifier`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class Optimization:
    """The classifier's ``optim`` option group (``--model.init_args.optim.lr=0.1``).

    Args:
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        lr: learning rate (the peak of ``onecycle``).
        weight_decay: weight decay.
        scheduler: per step: ``cosine``, ``cosine_restarts`` (``cycles`` equal cosine cycles, a
            snapshot ensemble's schedule), ``onecycle`` (warm-up to ``lr`` over ``warmup`` of the
            steps, then cosine to ``lr / 25e4``, momentum cycled) or ``none``.
        cycles: number of cycles of ``cosine_restarts``.
        warmup: share of the steps ``onecycle`` spends warming up.
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: Literal["cosine", "cosine_restarts", "onecycle", "none"] = "cosine"
    cycles: int = 1
    warmup: float = 0.2

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optim.optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.scheduler not in ("cosine", "cosine_restarts", "onecycle", "none"):
            raise ValueError(f"optim.scheduler must be cosine, cosine_restarts, onecycle or none, got {self.scheduler!r}")
        if self.cycles < 1:
            raise ValueError(f"optim.cycles must be at least 1, got {self.cycles}")
        if not 0.0 < self.warmup < 1.0:
            raise ValueError(f"optim.warmup must be in (0, 1), got {self.warmup}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")

    def as_dict(self) -> dict:
        return asdict(self)


def optimizer_and_schedule(hp: Mapping | Optimization, params: Iterable[torch.nn.Parameter], steps: int):
    """What ``configure_optimizers`` returns for the classifier's options ``hp`` over ``steps``
    optimiser steps: SGD (momentum 0.9, Nesterov) or AdamW, and a per-step schedule.
    ``hp``: an :class:`Optimization` or a mapping of its fields.

    Example:
        >>> conf = optimizer_and_schedule({"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0,
        ...                                "scheduler": "onecycle", "warmup": 0.2}, [torch.nn.Parameter(torch.ones(1))], 10)
        >>> type(conf["lr_scheduler"]["scheduler"]).__name__
        'OneCycleLR'
    """
    if isinstance(hp, Optimization):
        hp = hp.as_dict()
    if hp["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=hp["lr"], momentum=0.9, nesterov=True, weight_decay=hp["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    if hp["scheduler"] == "none":
        return opt
    if hp["scheduler"] == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=steps,
                                                    pct_start=hp.get("warmup", 0.2))
    elif hp["scheduler"] == "cosine_restarts":
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=max(steps // hp.get("cycles", 1), 1))
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
