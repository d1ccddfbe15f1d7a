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

METRICS = ("acc", "balanced_acc", "precision", "recall", "f1", "ece", "nll")
#: Table II's columns: the metric, its heading, and whether it is shown in percent.
COLUMNS = (("acc", "accuracy", True), ("balanced_acc", "balanced acc.", True), ("precision", "macro precision", True),
           ("recall", "macro recall", True), ("f1", "macro F1", True), ("ece", "ECE", True), ("nll", "NLL", False))
#: The probability floor of the negative log-likelihood: a hard vote gives a class no vote
#: at all, which would otherwise be an infinite loss.
NLL_FLOOR = 1e-4


def scores(probs: torch.Tensor, labels: torch.Tensor, num_classes: int, bins: int = 15) -> dict[str, float]:
    """The Table II figures for one set of predictions (class probabilities ``[N, C]``, labels
    ``[N]``): accuracy, balanced accuracy, macro precision / recall / F1, the expected
    calibration error (``bins`` equal-width confidence bins, L1) and the negative log-likelihood
    (probabilities floored at :data:`NLL_FLOOR`). Scores that are not probabilities (negative,
    or rows not summing to one, e.g. a hard vote's shares) are clipped at 0 and renormalised.

    Example:
        >>> s = scores(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]), 3)
        >>> round(s["acc"], 3), round(s["balanced_acc"], 3), round(s["precision"], 3), round(s["ece"], 3)
        (0.667, 0.667, 0.5, 0.333)
    """
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_calibration_error,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    k = num_classes
    p = probs.float().clamp(min=0)
    p = p / p.sum(-1, keepdim=True).clamp(min=1e-12)
    pred_scores = p
    return {
        "ece": float(multiclass_calibration_error(p, labels, k, n_bins=bins, norm="l1")),
        "nll": float(-p.gather(1, labels[:, None]).clamp(min=NLL_FLOOR).log().mean()),
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
        [('a', 2, [0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], [0.14, 0.14, 0.14, 0.14, 0.14, 0.14, 0.14])]
    """
    out = []
    for name, per_run in rows.items():
        arr = np.array([[r[m] for m in METRICS] for r in per_run], dtype=np.float64)
        std = arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(len(METRICS))
        out.append((name, len(per_run), arr.mean(0), std))
    return out


def write_table(rows: dict[str, list[dict]], out: Path, caption: str) -> str:
    """Table II as ``table2.md`` and ``table2.csv`` in ``out`` (mean and sample standard
    deviation over runs: folds x seeds; in percent but the NLL, in nats); returns the Markdown."""
    summary = summarise(rows)
    md = [f"Table II: test split, {caption}\n",
          "| model | " + " | ".join(head for _, head, _ in COLUMNS) + " |",
          "|---" * (len(COLUMNS) + 1) + "|"]
    for name, _, mean, std in summary:
        cells = [f"{100 * a:.1f} ± {100 * b:.1f}" if pct else f"{a:.3f} ± {b:.3f}"
                 for (a, b, (_, _, pct)) in zip(mean, std, COLUMNS)]
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(md) + "\n"
    write_text(Path(out) / "table2.md", text)
    head = ["model", "runs"] + [f"{m} mean" for m in METRICS] + [f"{m} std" for m in METRICS]
    scale = [100 if pct else 1 for _, _, pct in COLUMNS]
    write_csv(Path(out) / "table2.csv", head,
              ([name, n, *[f"{s * v:.4f}" for s, v in zip(scale, mean)], *[f"{s * v:.4f}" for s, v in zip(scale, std)]]
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
