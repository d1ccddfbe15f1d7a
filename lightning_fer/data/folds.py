"""Stratified (group) k-fold splits, saved to a file so every run sees the same folds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from lightning_fer.files import write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldSettings:
    """How the data are split: the data module's ``folds`` option group (``--data.folds.fold=2``).

    Records with the official ``test`` split form the test set; with ``fold`` set, the others are
    cut into ``num_folds`` stratified folds (subject-disjoint where subjects are known) and fold
    ``fold`` validates; with ``fold=None`` the official ``train`` and ``val`` splits are used (with
    no ``val`` split, every training image trains and nothing validates).

    Args:
        fold: the validation fold, or ``None`` for the official splits.
        num_folds: number of folds.
        seed: seed of the fold assignment and of the balanced sampler (the folds are saved in the
            cache folder, so that every backbone and the stacking step see the same split).
        eval_split: ``official``: validate on the validation split (a fold, or ``val``), test on
            ``test``. ``all``: validate, test and predict on every usable image, whatever its
            split (another data set tested with a model trained elsewhere); ``fit`` is refused.

    Example:
        >>> FoldSettings(fold=5, num_folds=5)
        Traceback (most recent call last):
        ...
        ValueError: folds.fold must be in [0, 5) or None, got 5
    """

    fold: int | None = 0
    num_folds: int = 5
    seed: int = 0
    eval_split: Literal["official", "all"] = "official"

    def __post_init__(self) -> None:
        if self.num_folds < 2:
            raise ValueError(f"folds.num_folds must be at least 2, got {self.num_folds}")
        if self.fold is not None and not 0 <= self.fold < self.num_folds:
            raise ValueError(f"folds.fold must be in [0, {self.num_folds}) or None, got {self.fold}")
        if self.eval_split not in ("official", "all"):
            raise ValueError(f"folds.eval_split must be 'official' or 'all', got {self.eval_split!r}")


class FoldsMismatchError(ValueError):
    """A saved folds file does not describe the images it is used with."""


def make_folds(
    labels: Sequence[int],
    groups: Sequence[str | None] | None = None,
    num_folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Assign each sample a fold in ``[0, num_folds)``: stratified by label, and subject-disjoint
    (scikit-learn's ``StratifiedGroupKFold``) when every sample has a group.

    Example:
        >>> folds = make_folds([0, 1] * 10, num_folds=5, seed=0)
        >>> sorted(np.bincount(folds).tolist())
        [4, 4, 4, 4, 4]
    """
    labels = np.asarray(labels)
    n = len(labels)
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}")
    if n < num_folds:
        raise ValueError(f"cannot cut {n} samples into {num_folds} folds")
    folds = np.full(n, -1, dtype=np.int64)
    has_groups = groups is not None and all(g not in (None, "") for g in groups)
    if has_groups:
        n_groups = len(set(groups))  # type: ignore[arg-type]
        if n_groups < num_folds:
            raise ValueError(f"{n_groups} subjects cannot fill {num_folds} subject-disjoint folds; lower num_folds")
        splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), labels, groups=np.asarray(groups))
    else:
        if groups is not None and any(g not in (None, "") for g in groups):
            log.warning("only some samples have a subject: folds are stratified but NOT subject-disjoint")
        else:
            log.warning(
                "no subject identities: folds are stratified but NOT subject-disjoint; the same person may "
                "appear in training and validation folds, which flatters validation figures"
            )
        splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), labels)
    for k, (_, val_idx) in enumerate(splits):
        folds[val_idx] = k
    return folds


def _digest(keys: Sequence[str]) -> str:
    h = hashlib.sha1()
    for k in keys:
        h.update(k.encode())
        h.update(b"\0")
    return h.hexdigest()


def load_or_make_folds(
    path: str | os.PathLike,
    keys: Sequence[str],
    labels: Sequence[int],
    groups: Sequence[str | None] | None,
    num_folds: int,
    seed: int,
) -> np.ndarray:
    """Folds for ``keys``: read from ``path`` when it holds them, else made and written there
    atomically.

    Raises:
        FoldsMismatchError: the file exists but was made for other images or settings.
    """
    path = Path(path)
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("num_folds") != num_folds or data.get("seed") != seed:
            raise FoldsMismatchError(
                f"{path}: made with num_folds={data.get('num_folds')}, seed={data.get('seed')}, not "
                f"num_folds={num_folds}, seed={seed}; point data.records.cache_dir elsewhere or delete it"
            )
        saved = dict(zip(data["keys"], data["folds"]))
        missing = [k for k in keys if k not in saved]
        if missing or len(saved) != len(keys):
            raise FoldsMismatchError(
                f"{path}: made for {len(saved)} images, now there are {len(keys)} ({len(missing)} not in the "
                f"file, e.g. {missing[:3]}); the data changed. Delete the file to cut new folds (runs that "
                "used the old ones are then not comparable) or point data.records.cache_dir elsewhere"
            )
        return np.array([saved[k] for k in keys], dtype=np.int64)
    folds = make_folds(labels, groups, num_folds, seed)
    grouped = groups is not None and all(g not in (None, "") for g in groups)
    data = {
        "num_folds": num_folds,
        "seed": seed,
        "subject_disjoint": grouped,
        "digest": _digest(keys),
        "keys": list(keys),
        "folds": folds.tolist(),
    }
    write_text(path, json.dumps(data))
    log.info("wrote %d-fold split of %d images to %s", num_folds, len(keys), path)
    return folds


def stratified_subset(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A stratified, seeded ``fraction`` of ``indices`` (scikit-learn's ``train_test_split``), sorted.

    Example:
        >>> stratified_subset(np.arange(8), np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.5).size
        4
    """
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(labels))
    if round(len(indices) * fraction) < n_classes:
        raise ValueError(
            f"training.fraction={fraction} leaves fewer than {n_classes} training images (one per class) of "
            f"{len(indices)}; raise it"
        )
    kept, _ = train_test_split(indices, train_size=fraction, stratify=labels, random_state=seed)
    log.info("training.fraction=%s: training on %d of %d images (stratified)", fraction, len(kept), len(indices))
    return np.sort(kept)


def bootstrap_resample(indices: np.ndarray, seed: int) -> np.ndarray:
    """A bootstrap resample of ``indices``: ``len(indices)`` draws with replacement, seeded
    (scikit-learn's ``resample``), sorted; the training split of a bagged member.

    Example:
        >>> r = bootstrap_resample(np.arange(100), seed=1)
        >>> r.size, len(np.unique(r)) < 100
        (100, True)
    """
    from sklearn.utils import resample

    if len(indices) == 0:
        return indices
    drawn = np.sort(resample(indices, replace=True, n_samples=len(indices), random_state=seed))
    log.info("training.bootstrap=%d: a bootstrap resample of %d training images (%d distinct)", seed, len(indices),
             len(np.unique(drawn)))
    return drawn
