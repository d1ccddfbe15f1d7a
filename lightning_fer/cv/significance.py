"""Is an ensemble really better than its best member on the same test faces? A paired bootstrap
interval of the accuracy difference, and McNemar's exact test on the faces where the two disagree.

Both take per-face correctness (boolean arrays of the same faces, in the same order), so that the
pairing is kept: resampling faces, not models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Paired", "mcnemar", "paired_bootstrap"]


@dataclass(frozen=True)
class Paired:
    """The accuracy difference ``a - b`` on the same faces, its bootstrap interval, and McNemar's
    counts and exact two-sided p-value."""

    diff: float
    lo: float
    hi: float
    a_only: int  # faces a gets right and b wrong
    b_only: int
    p_value: float


def paired_bootstrap(correct_a, correct_b, n_boot: int = 10_000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """The accuracy difference ``mean(a) - mean(b)`` and its percentile bootstrap interval over
    faces resampled with replacement (the same faces for both, each draw).

    Example:
        >>> a = np.r_[np.ones(100, bool), np.zeros(900, bool)]   # a right on 100 faces b gets wrong
        >>> d, lo, hi = paired_bootstrap(a, np.zeros(1000, bool))
        >>> round(d, 3), round(lo, 2), round(hi, 2)
        (0.1, 0.08, 0.12)
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_bootstrap needs two equal-length 1-D arrays of per-face correctness, got {a.shape} and {b.shape}")
    d = a.astype(np.int8) - b.astype(np.int8)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # 500 draws at a time: bounded memory at any test size
        idx = rng.integers(0, len(d), size=(min(500, n_boot - start), len(d)))
        means[start:start + len(idx)] = d[idx].mean(1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(lo), float(hi)


def mcnemar(correct_a, correct_b) -> tuple[int, int, float]:
    """McNemar's exact test: the faces only ``a`` gets right, those only ``b`` gets right, and the
    two-sided binomial p-value of that split under "equally good".

    Example:
        >>> mcnemar([1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0])[:2], round(mcnemar([1] * 6, [0] * 6)[2], 4)
        ((6, 0), 0.0312)
    """
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else float(binomtest(a_only, n, 0.5, alternative="two-sided").pvalue)
    return a_only, b_only, p


def compare(correct_a, correct_b, n_boot: int = 10_000, seed: int = 0) -> Paired:
    """:func:`paired_bootstrap` and :func:`mcnemar` of ``a`` against ``b`` in one record."""
    diff, lo, hi = paired_bootstrap(correct_a, correct_b, n_boot, seed=seed)
    a_only, b_only, p = mcnemar(correct_a, correct_b)
    return Paired(diff, lo, hi, a_only, b_only, p)
