"""Pictures as PNG files: confusion matrices, learning curves, per-class precision and recall, and
Table II's rows as bars."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lightning_fer.files import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    """Write a figure atomically (temporary name, then rename) and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
    finally:
        _plt().close(fig)
    return Path(path)


def plot_confusion(matrix, class_names: Sequence[str], title: str, path: str | os.PathLike) -> Path:
    """Row-normalised confusion matrix (true class per row) with counts."""
    plt = _plt()

    m = np.asarray(matrix, dtype=np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.8 + 0.7 * k), dpi=110)
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(m[i, j])})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, path)


def per_class_precision_recall(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall per class from a confusion matrix (rows: true class)."""
    import torch
    from torchmetrics.functional.classification import multiclass_precision, multiclass_recall

    m = torch.as_tensor(np.asarray(matrix), dtype=torch.long)
    k = len(m)
    # The (true, predicted) pairs the matrix counts, as torchmetrics takes them.
    target = torch.arange(k).repeat_interleave(m.sum(1))
    preds = torch.arange(k).repeat(k).repeat_interleave(m.flatten())
    precision = multiclass_precision(preds, target, k, average=None, zero_division=0)
    recall = multiclass_recall(preds, target, k, average=None, zero_division=0)
    return precision.double().numpy(), recall.double().numpy()


def plot_precision_recall(matrix, class_names: Sequence[str], title: str, path: str | os.PathLike) -> Path:
    """Bars of precision and recall per class (the paper's figures 4 and 5)."""
    plt = _plt()
    precision, recall = per_class_precision_recall(matrix)
    k = len(class_names)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * k, 3.6), dpi=110)
    ax.bar(x - 0.2, precision, 0.4, label="precision")
    ax.bar(x + 0.2, recall, 0.4, label="recall")
    for xi, (p, r) in enumerate(zip(precision, recall)):
        ax.text(xi - 0.2, p + 0.01, f"{p:.2f}", ha="center", fontsize=7)
        ax.text(xi + 0.2, r + 0.01, f"{r:.2f}", ha="center", fontsize=7)
    ax.set_xticks(x, class_names, rotation=30, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(names: Sequence[str], values: Sequence[float], errors: Sequence[float], kinds: Sequence[str],
              title: str, path: str | os.PathLike) -> Path:
    """Horizontal bars, one per row (``values`` with ``errors`` as whiskers, NaN drawn empty),
    coloured by ``kinds`` (one legend entry per kind), the highest value marked."""
    plt = _plt()
    n = len(names)
    palette = dict(zip(dict.fromkeys(kinds), plt.get_cmap("tab10").colors))
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.26 * n), dpi=110)
    y = np.arange(n)[::-1]
    vals = np.nan_to_num(np.asarray(values, dtype=float))
    errs = np.nan_to_num(np.asarray(errors, dtype=float))
    ax.barh(y, vals, xerr=errs, color=[palette[k] for k in kinds], error_kw={"lw": 0.8})
    for yi, v in zip(y, vals):
        ax.text(v + 0.3, yi, f"{v:.1f}", va="center", fontsize=6)
    if n:
        top = int(np.argmax(vals))
        ax.axvline(vals[top], color="grey", lw=0.6, ls="--")
    ax.set_yticks(y, names, fontsize=6)
    ax.set_title(title, fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in palette.values()]
    ax.legend(handles, [k or "row" for k in palette], fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_learning_curves(history: dict[str, list[tuple[int, float]]], title: str, path: str | os.PathLike) -> Path:
    """Loss and accuracy per epoch, train and val (the paper's figure 3).

    Args:
        history: metric name -> ``[(epoch, value), ...]``; uses ``train/loss_epoch`` or
            ``train/loss``, ``val/loss``, ``train/acc`` and ``val/acc`` where present.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    for ax, what in zip(axes, ("loss", "acc")):
        for stage in ("train", "val"):
            series = history.get(f"{stage}/{what}_epoch") or history.get(f"{stage}/{what}")
            if series:
                ep, val = zip(*series)
                ax.plot(ep, val, marker="o", label=stage)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if what == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_runs(curves: dict[str, Sequence[tuple[int, float]]], title: str, path: str | os.PathLike,
              ylabel: str = "accuracy") -> Path:
    """One figure per epoch for several runs on one axis (``{name: [(epoch, value), ...]}``), a
    line and a legend entry each: members' hold-out accuracy side by side.

    Raises:
        ValueError: no run has a point (an empty picture would say nothing).
    """
    if not any(curves.values()):
        raise ValueError(f"{title}: no run has a figure to draw")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, series in curves.items():
        if series:
            ep, val = zip(*series)
            ax.plot(ep, val, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_timeline(times: Sequence[float], probs, class_names: Sequence[str], title: str, path: str | os.PathLike) -> Path:
    """The probability of each expression against time (one track of a video)."""
    plt = _plt()
    p = np.asarray(probs, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, 0.05 * len(times) + 5)), 3.6))
    for k, name in enumerate(class_names):
        ax.plot(times, p[:, k], label=name, marker="." if len(times) < 40 else None, linewidth=1.5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_per_class_recall(recall: dict[str, Sequence[float]], class_names: Sequence[str], title: str,
                          path: str | os.PathLike) -> Path:
    """Grouped bars: each model's recall (fractions) per class, side by side.

    Example:
        >>> import tempfile
        >>> p = plot_per_class_recall({"a": [0.5, 0.9], "b": [0.6, 0.8]}, ["sad", "happy"], "t",
        ...                           Path(tempfile.mkdtemp()) / "r.png")
        >>> p.is_file()
        True
    """
    plt = _plt()
    k, m = len(class_names), max(len(recall), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * k * m / 2 + 2), 3.8))
    width = 0.8 / m
    for i, (name, values) in enumerate(recall.items()):
        x = np.arange(k) + (i - (m - 1) / 2) * width
        ax.bar(x, 100 * np.asarray(values, float), width, label=name)
    ax.set_xticks(np.arange(k), list(class_names))
    ax.set_ylabel("recall %")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
