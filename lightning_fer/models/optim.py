"""The optimiser and learning-rate schedule of a :class:`~lightning_fer.models.FERClassifier`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def optimizer_and_schedule(hp: Mapping, params: Iterable[torch.nn.Parameter], steps: int):
    """What ``configure_optimizers`` returns for the classifier's options ``hp`` over ``steps``
    optimiser steps: SGD (momentum 0.9, Nesterov) or AdamW, and a per-step schedule.

    Example:
        >>> conf = optimizer_and_schedule({"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0,
        ...                                "scheduler": "onecycle", "warmup": 0.2}, [torch.nn.Parameter(torch.ones(1))], 10)
        >>> type(conf["lr_scheduler"]["scheduler"]).__name__
        'OneCycleLR'
    """
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
