"""Reporting a ``cv`` run: the Table II figures, their mean and spread over runs, Markdown and
CSV tables, confusion-matrix pictures, and W&B."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from lightning_fer.files import write_csv, write_text
from lightning_fer.models.evaluation import NLL_FLOOR, score, to_probabilities  # noqa: F401 (NLL_FLOOR: 0.2's import)

log = logging.getLogger(__name__)

METRICS = ("acc", "balanced_acc", "precision", "recall", "f1", "ece", "nll",
           "acc90_conf", "acc80_conf", "acc90_agree", "acc80_agree")
#: Table II's columns: the metric, its heading, and whether it is shown in percent.
COLUMNS = (("acc", "accuracy", True), ("balanced_acc", "balanced acc.", True), ("precision", "macro precision", True),
           ("recall", "macro recall", True), ("f1", "macro F1", True), ("ece", "ECE", True), ("nll", "NLL", False),
           ("acc90_conf", "acc. @90% (top prob.)", True), ("acc80_conf", "acc. @80% (top prob.)", True),
           ("acc90_agree", "acc. @90% (agreement)", True), ("acc80_agree", "acc. @80% (agreement)", True))
#: What a row of Table II is: ``kind`` (``member``, ``expert``, ``student``, ``snapshot`` or
#: ``strategy``), the ``member`` it is (or, for a snapshot, whose), its ``region``, the
#: ``strategy`` and ``group`` of an ensemble row, and whether the mirrored face is in (``flip``).
ROW_FIELDS = ("kind", "member", "region", "strategy", "group", "flip")
#: Selective prediction: the shares of faces kept (the rest flagged for a person).
COVERAGES = (0.9, 0.8)


def selective(probs: torch.Tensor, labels: torch.Tensor, agreement: torch.Tensor | None = None) -> dict[str, float]:
    """Accuracy on the 90% and 80% of faces a row is surest of: ranked by its top probability
    (``acc90_conf``, ``acc80_conf``; for a member, the single network's own confidence) and, for
    an ensemble, by its voters' agreement with its answer (``acc90_agree``, ``acc80_agree``;
    NaN for a member). Samples labelled -1 (unknown classes) are left out.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.3, 0.7]])
        >>> s = selective(probs, torch.tensor([0, 1, 1, 0, 0]))  # right on the two surest faces only
        >>> round(s["acc90_conf"], 3), round(s["acc80_conf"], 3), s["acc90_agree"] != s["acc90_agree"]
        (0.4, 0.5, True)
    """
    from lightning_fer.ensemble.functional import selective_accuracy

    keep = labels >= 0
    probs, labels = to_probabilities(probs)[keep], labels[keep]
    correct = probs.argmax(1) == labels
    out = {}
    for cov in COVERAGES:
        pct = round(100 * cov)
        out[f"acc{pct}_conf"] = selective_accuracy(probs.max(1).values, correct, cov)
        out[f"acc{pct}_agree"] = (selective_accuracy(agreement[keep], correct, cov) if agreement is not None
                                  else float("nan"))
    return out


def scores(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """The Table II figures for one set of predictions (class scores ``[N, C]``, labels ``[N]``):
    the metric collection ``validate`` and ``test`` log
    (:func:`~lightning_fer.models.evaluation.classification_metrics`: accuracy, balanced
    accuracy, macro precision / recall / F1, ECE with 15 bins, NLL floored at 1e-4), on
    :func:`~lightning_fer.models.evaluation.to_probabilities` of the scores.

    Example:
        >>> s = scores(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]), 3)
        >>> round(s["acc"], 3), round(s["balanced_acc"], 3), round(s["precision"], 3), round(s["ece"], 3)
        (0.667, 0.667, 0.5, 0.333)
    """
    return score(probs, labels, num_classes)


def summarise(rows: dict[str, list[dict]]) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Per model: the number of runs, and the mean and sample standard deviation of each of
    :data:`METRICS` over them (0 for one run).

    Example:
        >>> [(n, k, m.round(2).tolist(), s.round(2).tolist())
        ...  for n, k, m, s in summarise({"a": [dict.fromkeys(METRICS, 0.5), dict.fromkeys(METRICS, 0.7)]})]
        [('a', 2, [0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], [0.14, 0.14, 0.14, 0.14, 0.14, 0.14, 0.14, 0.14, 0.14, 0.14, 0.14])]
    """
    out = []
    for name, per_run in rows.items():
        arr = np.array([[r[m] for m in METRICS] for r in per_run], dtype=np.float64)
        std = arr.std(0, ddof=1) if len(arr) > 1 else np.where(np.isnan(arr[0]), np.nan, 0.0)
        out.append((name, len(per_run), arr.mean(0), std))
    return out


def write_table(rows: dict[str, list[dict]], out: Path, caption: str, what: dict[str, dict] | None = None) -> str:
    """Table II as ``table2.md`` and ``table2.csv`` in ``out`` (mean and sample standard
    deviation over runs: folds x seeds; in percent but the NLL, in nats; ``-`` where a figure does
    not apply, such as a member's agreement), and ``table2_runs.csv``: one row per table row and
    run (``fold``, ``seed``). Both CSVs say what each row is (``kind``, ``member``, ``region``,
    ``strategy``, ``group``, ``flip``: ``what``, from :func:`~lightning_fer.cv.run.evaluate`), so
    that readers select rows by column. Returns the Markdown."""
    what = what or {}
    summary = summarise(rows)
    md = [f"Table II: test split, {caption}\n",
          "| model | " + " | ".join(head for _, head, _ in COLUMNS) + " |",
          "|---" * (len(COLUMNS) + 1) + "|"]
    for name, _, mean, std in summary:
        cells = ["-" if np.isnan(a) else f"{100 * a:.1f} ± {100 * b:.1f}" if pct else f"{a:.3f} ± {b:.3f}"
                 for (a, b, (_, _, pct)) in zip(mean, std, COLUMNS)]
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(md) + "\n"
    write_text(Path(out) / "table2.md", text)
    scale = [100 if pct else 1 for _, _, pct in COLUMNS]

    def fields(name: str) -> list:
        return [what.get(name, {}).get(f, "") for f in ROW_FIELDS]

    def num(v: float, s: float) -> str:
        return "" if np.isnan(v) else f"{s * v:.4f}"

    head = ["model", *ROW_FIELDS, "runs"] + [f"{m} mean" for m in METRICS] + [f"{m} std" for m in METRICS]
    write_csv(Path(out) / "table2.csv", head,
              ([name, *fields(name), n, *[num(v, s) for s, v in zip(scale, mean)], *[num(v, s) for s, v in zip(scale, std)]]
               for name, n, mean, std in summary))
    write_csv(Path(out) / "table2_runs.csv", ["model", *ROW_FIELDS, "fold", "seed", *METRICS],
              ([name, *fields(name), r.get("fold", ""), "" if r.get("seed") is None else r["seed"],
                *[num(r[m], s) for s, m in zip(scale, METRICS)]]
               for name, per_run in rows.items() for r in per_run))
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
