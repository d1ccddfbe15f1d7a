"""Knowledge distillation: a classifier learns an ensemble's soft targets (Hinton et al., 2015).

The targets are a file written by ``cv`` (``soft_targets.pt``): the teacher's class
probabilities for every training image, by the image's index in the data module's record list,
with the data's fingerprint, so that a student is only ever trained on the split they were
computed for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

FINGERPRINT_KEYS = ("source", "num_folds", "seed", "fold", "train_hash")


@dataclass(frozen=True)
class Distillation:
    """The classifier's ``distill`` option group: learn a teacher's soft targets as well as the labels.

    Args:
        teacher: a soft-targets file (``soft_targets.pt`` of a ``cv`` run).
        weight: weight of the teacher's term (``1 - weight`` on the labels).
        temperature: temperature of the teacher's term.
    """

    teacher: str
    weight: float = 0.5
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0 or self.temperature <= 0:
            raise ValueError(f"distill.weight must be in [0, 1] and distill.temperature > 0, got {self.weight}, "
                             f"{self.temperature}")


def distill_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    weight: float = 0.5,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(1 - weight) * CE(logits, labels) + weight * T^2 * KL(teacher_T || softmax(logits / T))``.

    ``teacher_T`` is the teacher's distribution sharpened or softened by ``T``
    (``softmax(log p / T)``); the ``T^2`` keeps the gradient's scale as ``T`` changes.
    ``keep`` ``[B]``: the samples that count (``None``: all).

    Example:
        >>> p = torch.tensor([[0.5, 0.5]])
        >>> float(distill_loss(p.log(), torch.tensor([0]), p, weight=1.0))  # the student is the teacher
        0.0
    """
    logits = logits.float()
    t = temperature
    target = F.softmax(teacher_probs.float().clamp(min=1e-12).log() / t, -1)
    kl = (target * (target.clamp(min=1e-12).log() - F.log_softmax(logits / t, -1))).sum(-1) * t * t
    ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="none")
    per = (1 - weight) * ce + weight * kl
    if keep is None:
        return per.mean()
    k = keep.to(per.dtype)
    return (per * k).sum() / k.sum().clamp(min=1)


def load_soft_targets(path: str | Path, class_names: list[str], data_print: dict | None) -> torch.Tensor:
    """The teacher's probabilities ``[records, C]`` (NaN rows: images it has no target for),
    checked against the student's classes and data."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher soft targets {path} do not exist; `python -m lightning_fer cv` with "
                                f"`students:` writes them (<output_dir>/<run>/soft_targets.pt)")
    d = torch.load(path, map_location="cpu", weights_only=True)
    if list(d["class_names"]) != list(class_names):
        raise ValueError(f"teacher soft targets {path} are for classes {d['class_names']}, the student has {class_names}")
    theirs = d.get("data_print") or {}
    if data_print is not None:
        diff = [k for k in FINGERPRINT_KEYS if theirs.get(k) != data_print.get(k)]
        if diff:
            raise ValueError(f"teacher soft targets {path} were computed on other data ({', '.join(diff)} differ): "
                             f"train the student with the data settings of the teacher's run")
    return d["probs"].float()


def teacher_targets(path, class_names: list[str], fingerprint: dict | None, datamodule) -> torch.Tensor:
    """:func:`load_soft_targets`, checked to cover every training image of ``datamodule``."""
    probs = load_soft_targets(path, class_names, fingerprint)
    train = getattr(datamodule, "splits", {}).get("train", []) if datamodule is not None else []
    missing = int(torch.isnan(probs[torch.as_tensor(list(train), dtype=torch.long)]).any(1).sum())
    if missing:
        raise ValueError(f"teacher soft targets {path} lack {missing} of the {len(train)} "
                         "training images: compute them on this run's training split")
    return probs


@torch.no_grad()
def write_soft_targets(net, datamodule, path: str | Path, teachers: list[str], autocast=None,
                       sources: dict | None = None) -> Path:
    """The teachers' probabilities on every training image of ``datamodule`` (set up for ``fit``,
    yielding the views of ``net``, with no augmentation): the
    :class:`~lightning_fer.ensemble.SoftVote` of ``net`` (an
    :class:`~lightning_fer.ensemble.EnsembleNet`) over its members and views, the mirror
    included where it flips, by the image's index in the data's records, with the data's
    fingerprint, at ``path`` (written atomically): what :class:`Distillation` reads.

    ``autocast``: the context to run the teachers under (default float32); ``sources``: what made
    them (saved as is, for a reader to tell stale targets)."""
    import contextlib

    from lightning_fer.ensemble.strategies import SoftVote
    from lightning_fer.files import save_torch

    with autocast or contextlib.nullcontext():
        logits, _, index, _ = net.collect(datamodule.loader("train", distributed=False))
    probs = torch.full((len(datamodule.records), logits.shape[-1]), float("nan"))
    vote = SoftVote()
    vote.setup(*logits.shape[1:])
    probs[index] = vote(logits.float(), net.mask.cpu())
    return save_torch({"probs": probs, "class_names": list(net.class_names), "data_print": datamodule.fingerprint(),
                       "teachers": list(teachers), "sources": sources}, path)
