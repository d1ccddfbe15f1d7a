"""Reporting a ``cv`` run: the Table II figures, their mean and spread over runs, Markdown and
CSV tables, confusion-matrix pictures, and W&B."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from lightning_fer.files import write_csv, write_text

log = logging.getLogger(__name__)

METRICS = ("acc", "balanced_acc", "precision", "recall", "f1")


def scores(pred_scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """The Table II figures for one set of predictions (scores ``[N, C]``, labels ``[N]``).

    Example:
        >>> s = scores(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]), 3)
        >>> round(s["acc"], 3), round(s["balanced_acc"], 3), round(s["precision"], 3)
        (0.667, 0.667, 0.5)
    """
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    k = num_classes
    return {
        "acc": float(multiclass_accuracy(pred_scores, labels, k, average="micro")),
        "balanced_acc": float(multiclass_accuracy(pred_scores, labels, k, average="macro")),
        "precision": float(multiclass_precision(pred_scores, labels, k, average="macro")),
        "recall": float(multiclass_recall(pred_scores, labels, k, average="macro")),
        "f1": float(multiclass_f1_score(pred_scores, labels, k, average="macro")),
    }


def summarise(rows: dict[str, list[dict]]) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Per model: the number of runs, and the mean and sample standard deviation of each of
    :data:`METRICS` over them (0 for one run).

    Example:
        >>> [(n, k, m.round(2).tolist(), s.round(2).tolist())
        ...  for n, k, m, s in summarise({"a": [dict.fromkeys(METRICS, 0.5), dict.fromkeys(METRICS, 0.7)]})]
        [('a', 2, [0.6, 0.6, 0.6, 0.6, 0.6], [0.14, 0.14, 0.14, 0.14, 0.14])]
    """
    out = []
    for name, per_run in rows.items():
        arr = np.array([[r[m] for m in METRICS] for r in per_run], dtype=np.float64)
        std = arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(len(METRICS))
        out.append((name, len(per_run), arr.mean(0), std))
    return out


def write_table(rows: dict[str, list[dict]], out: Path, caption: str) -> str:
    """Table II as ``table2.md`` and ``table2.csv`` in ``out`` (mean and sample standard
    deviation over runs: folds x seeds, in percent in the Markdown); returns the Markdown."""
    summary = summarise(rows)
    md = [f"Table II: test split, {caption}\n",
          "| model | accuracy | balanced acc. | macro precision | macro recall | macro F1 |",
          "|---|---|---|---|---|---|"]
    for name, _, mean, std in summary:
        md.append(f"| {name} | " + " | ".join(f"{100 * a:.1f} ± {100 * b:.1f}" for a, b in zip(mean, std)) + " |")
    text = "\n".join(md) + "\n"
    write_text(Path(out) / "table2.md", text)
    head = ["model", "runs"] + [f"{m} mean" for m in METRICS] + [f"{m} std" for m in METRICS]
    write_csv(Path(out) / "table2.csv", head,
              ([name, n, *[f"{100 * v:.4f}" for v in mean], *[f"{100 * v:.4f}" for v in std]]
               for name, n, mean, std in summary))
    return text


def slug(name: str) -> str:
    """A file-name-safe form of a row name: ``SoftVote (calibrated)`` -> ``softvote__calibrated``."""
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()


def plot_confusions(confusion: dict[str, torch.Tensor], class_names: list[str], out: Path) -> list[Path]:
    """A confusion-matrix PNG per row of the table (summed over runs)."""
    from lightning_fer.plots import plot_confusion

    return [plot_confusion(cm, class_names, f"{name} (test, summed over runs)", Path(out) / f"confusion_{slug(name)}.png")
            for name, cm in confusion.items()]


def log_to_wandb(project: str, out: Path, rows: dict[str, list[dict]], pictures: list[Path], config: dict) -> None:
    """Table II as a W&B table, the confusion matrices as images, each row's mean accuracy in the
    summary; offline without credentials or with ``WANDB_MODE=offline``."""
    import wandb

    from lightning_fer.loggers import wandb_has_credentials

    offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_has_credentials()
    if offline:
        log.warning("W&B: logging the cv run offline to %s", out)
    run = wandb.init(project=project, dir=str(out), mode="offline" if offline else "online", job_type="cv", config=config)
    columns = ["model", "runs"] + [f"{m}_mean" for m in METRICS] + [f"{m}_std" for m in METRICS]
    data = [[name, n, *mean.tolist(), *std.tolist()] for name, n, mean, std in summarise(rows)]
    run.log({"table2": wandb.Table(columns=columns, data=data),
             **{f"confusion/{p.stem.removeprefix('confusion_')}": wandb.Image(str(p)) for p in pictures}})
    for row in data:
        run.summary[f"{row[0]}/acc_mean"] = row[2]
    run.finish()
    wandb.teardown()  # end the W&B session this run started, so later runs take fresh settings
