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
#: ``strategy`` and ``group`` of an ensemble row, whether the mirrored face is in (``flip``), and
#: who voted (``voters``: member names joined by ``;``; a member row: the member itself).
ROW_FIELDS = ("kind", "member", "region", "strategy", "group", "flip", "voters")
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


def table_records(rows: dict[str, list[dict]], what: dict[str, dict] | None = None) -> list[dict]:
    """Table II as structured rows: one per table row and run, holding the row's ``model`` name,
    what it is (:data:`ROW_FIELDS`), its ``fold`` and ``seed``, and the figures (:data:`METRICS`,
    as fractions). ``table2_runs.csv`` is these rows; the Markdown, ``table2.csv``, the pictures,
    W&B and :func:`ensemble_gains` are computed from them.

    Example:
        >>> r = table_records({"a": [dict.fromkeys(METRICS, 0.5) | {"fold": 0, "seed": 1}]}, {"a": {"kind": "member"}})
        >>> r[0]["model"], r[0]["kind"], r[0]["seed"], r[0]["acc"]
        ('a', 'member', 1, 0.5)
    """
    what = what or {}
    return [{"model": name, **{f: what.get(name, {}).get(f, "") for f in ROW_FIELDS}, "fold": r.get("fold", ""),
             "seed": r.get("seed"), **{m: float(r[m]) for m in METRICS}}
            for name, per_run in rows.items() for r in per_run]


def read_records(path: str | os.PathLike) -> list[dict]:
    """The structured rows of a finished run, read back from its ``table2_runs.csv`` (or the
    folder holding it): figures as fractions (NaN where blank), ``flip`` as a bool, ``seed`` and
    ``fold`` as ints (``None`` where blank).

    Raises:
        FileNotFoundError: naming the file, when the run has not written it yet.
    """
    import csv

    path = Path(path)
    path = path / "table2_runs.csv" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no Table II rows here; run `python -m lightning_fer cv` to write them")
    scale = {m: (100.0 if pct else 1.0) for m, _, pct in COLUMNS}
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rec = {"model": row["model"], **{k: row.get(k, "") for k in ROW_FIELDS}}
            rec["flip"] = str(rec["flip"]).lower() == "true"
            for k in ("fold", "seed"):
                rec[k] = int(row[k]) if row.get(k, "") != "" else None
            for m in METRICS:
                v = row.get(m, "")
                rec[m] = float(v) / scale[m] if v not in ("", None) else float("nan")
            out.append(rec)
    return out


def summary_of(records: list[dict]) -> list[tuple[str, dict, int, np.ndarray, np.ndarray]]:
    """Per model, in order of first appearance: what it is, the number of runs, and the mean and
    sample standard deviation of :data:`METRICS` over them (0 for one run)."""
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["model"], []).append(r)
    return [(name, {f: rs[0].get(f, "") for f in ROW_FIELDS}, n, mean, std)
            for (name, n, mean, std), rs in zip(summarise(by), by.values())]


def write_table(rows: dict[str, list[dict]], out: Path, caption: str, what: dict[str, dict] | None = None) -> str:
    """Table II as ``table2_runs.csv`` (the structured rows of :func:`table_records`: one per
    table row and run), and, computed from those rows, ``table2.md`` and ``table2.csv`` (mean and
    sample standard deviation over runs: folds x seeds; in percent but the NLL, in nats; ``-``
    where a figure does not apply, such as a member's agreement). Both CSVs say what each row is
    (:data:`ROW_FIELDS`), so that readers select rows by column. Returns the Markdown."""
    records = table_records(rows, what)
    scale = [100 if pct else 1 for _, _, pct in COLUMNS]

    def num(v: float, s: float) -> str:
        return "" if np.isnan(v) else f"{s * v:.4f}"

    write_csv(Path(out) / "table2_runs.csv", ["model", *ROW_FIELDS, "fold", "seed", *METRICS],
              ([r["model"], *[r[f] for f in ROW_FIELDS], "" if r["fold"] is None else r["fold"],
                "" if r["seed"] is None else r["seed"], *[num(r[m], s) for s, m in zip(scale, METRICS)]]
               for r in records))
    summary = summary_of(records)
    text = markdown_table(summary, caption)
    write_text(Path(out) / "table2.md", text)
    head = ["model", *ROW_FIELDS, "runs"] + [f"{m} mean" for m in METRICS] + [f"{m} std" for m in METRICS]
    write_csv(Path(out) / "table2.csv", head,
              ([name, *[fields[f] for f in ROW_FIELDS], n, *[num(v, s) for s, v in zip(scale, mean)],
                *[num(v, s) for s, v in zip(scale, std)]] for name, fields, n, mean, std in summary))
    return text


def markdown_table(summary: list[tuple], caption: str | None = None, columns=COLUMNS) -> str:
    """Table II in Markdown from :func:`summary_of` (``columns``: a subset of :data:`COLUMNS`)."""
    index = {m: i for i, m in enumerate(METRICS)}
    md = ([f"Table II: test split, {caption}\n"] if caption else []) + [
        "| model | " + " | ".join(head for _, head, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, _, _, mean, std in summary:
        cells = []
        for m, _, pct in columns:
            a, b = mean[index[m]], std[index[m]]
            cells.append("-" if np.isnan(a) else f"{100 * a:.1f} ± {100 * b:.1f}" if pct else f"{a:.3f} ± {b:.3f}")
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


def ensemble_gains(records: list[dict], include: list[str] = (), metric: str = "acc", flip: bool | None = None) -> dict:
    """The best ensemble against the best single member on the same views, seed by seed, from
    the structured rows alone (never from row names, so a user's strategy named like a member
    is never taken for one).

    The candidates are the strategy rows whose ``voters`` include every name in ``include``
    (e.g. the paper's three), over whole faces (group ``all views`` or a user's group, not the
    region groups) with the same ``flip`` as the members they are compared with; the members
    are the whole-face member rows (``kind`` ``member``, region ``face``). Both are chosen by
    their mean ``metric`` over seeds (``flip=None``: the setting, with or without the mirrored
    face, whose best member is higher). Returns the names, their per-seed figures, the per-seed
    gains and the seeds.

    Raises:
        ValueError: when no strategy row includes ``include``, or there is no member row.
    """
    face_groups = {r["group"] for r in records if r["kind"] == "strategy"} - {"faces", "regions", "experts",
                                                                              "faces + experts"}
    face_groups = {g for g in face_groups if not g.startswith("snapshots ")}

    def per_seed(name: str) -> dict:
        return {r["seed"]: r[metric] for r in records if r["model"] == name}

    def best(names: list[str]) -> str | None:
        return max(names, key=lambda n: float(np.mean(list(per_seed(n).values()))), default=None)

    out = None
    for f in ([flip] if flip is not None else [True, False]):
        members = [r["model"] for r in records if r["kind"] == "member" and r["region"] == "face" and r["flip"] == f]
        ensembles = [r["model"] for r in records if r["kind"] == "strategy" and r["group"] in face_groups
                     and r["flip"] == f and set(include) <= set(str(r["voters"]).split(";"))]
        m, e = best(list(dict.fromkeys(members))), best(list(dict.fromkeys(ensembles)))
        if m is None or e is None:
            continue
        pm, pe = per_seed(m), per_seed(e)
        seeds = sorted(set(pm) & set(pe), key=lambda s: (s is None, s))
        cand = {"member": m, "ensemble": e, "flip": f, "seeds": seeds, "member_by_seed": [pm[s] for s in seeds],
                "ensemble_by_seed": [pe[s] for s in seeds], "gain_by_seed": [pe[s] - pm[s] for s in seeds]}
        if out is None or np.mean(cand["member_by_seed"]) > np.mean(out["member_by_seed"]):
            out = cand
    if out is None:
        raise ValueError(f"no whole-face member row, or no strategy row whose voters include {list(include)}")
    return out


def slug(name: str) -> str:
    """A file-name-safe form of a row name: ``SoftVote (calibrated)`` -> ``softvote__calibrated``."""
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()


def plot_confusions(confusion: dict[str, torch.Tensor], class_names: list[str], out: Path) -> list[Path]:
    """A confusion-matrix PNG per row of the table (summed over runs)."""
    from lightning_fer.plots import plot_confusion

    return [plot_confusion(cm, class_names, f"{name} (test, summed over runs)", Path(out) / f"confusion_{slug(name)}.png")
            for name, cm in confusion.items()]


def plot_table(records: list[dict], out: Path, metric: str = "acc") -> Path:
    """Table II as a picture: each row's mean ``metric`` over runs, with its standard deviation,
    coloured by what the row is (member, expert, strategy, ...); ``table2_<metric>.png``."""
    from lightning_fer.plots import plot_bars

    summary = summary_of(records)
    i = METRICS.index(metric)
    head = dict((m, h) for m, h, _ in COLUMNS)[metric]
    return plot_bars([n for n, *_ in summary], [100 * m[i] for *_, m, _ in summary], [100 * s[i] for *_, s in summary],
                     [f["kind"] for _, f, *_ in summary], f"Table II: {head} (%), mean over runs",
                     Path(out) / f"table2_{metric}.png")


def log_to_wandb(project: str, out: Path, records: list[dict], pictures: list[Path], config: dict) -> None:
    """Table II's structured rows (:func:`table_records`) as W&B tables (per run, and the mean and
    spread per row), the pictures as images, each row's mean accuracy in the summary; offline
    without credentials or with ``WANDB_MODE=offline``."""
    import wandb

    from lightning_fer.loggers import wandb_has_credentials

    offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_has_credentials()
    if offline:
        log.warning("W&B: logging the cv run offline to %s", out)
    run = wandb.init(project=project, dir=str(out), mode="offline" if offline else "online", job_type="cv", config=config)
    columns = ["model", *ROW_FIELDS, "runs"] + [f"{m}_mean" for m in METRICS] + [f"{m}_std" for m in METRICS]
    data = [[name, *[str(f[k]) for k in ROW_FIELDS], n, *mean.tolist(), *std.tolist()]
            for name, f, n, mean, std in summary_of(records)]
    per_run = [[r["model"], *[str(r[k]) for k in ROW_FIELDS], r["fold"], r["seed"], *[r[m] for m in METRICS]]
               for r in records]
    run.log({"table2": wandb.Table(columns=columns, data=data),
             "table2_runs": wandb.Table(columns=["model", *ROW_FIELDS, "fold", "seed", *METRICS], data=per_run),
             **{(f"confusion/{p.stem.removeprefix('confusion_')}" if p.stem.startswith("confusion_")
                 else f"pictures/{p.stem}"): wandb.Image(str(p)) for p in pictures}})
    for row in data:
        run.summary[f"{row[0]}/acc_mean"] = row[len(ROW_FIELDS) + 2]
    run.finish()
    wandb.teardown()  # end the W&B session this run started, so later runs take fresh settings
