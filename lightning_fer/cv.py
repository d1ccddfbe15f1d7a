"""Cross-validated training and evaluation in one command: ``python -m lightning_fer cv``.

For every fold: train each member config (a FERClassifier config) on the other folds, then
collect every member's predictions on every view for the held-out fold (out of fold) and for
the test split. Learning strategies are fitted on the pooled out-of-fold predictions (each
fold's members checked against the fold they were held out from); every member and every
strategy is evaluated on the test split per fold; the paper's Table II (accuracy, balanced
accuracy, macro precision / recall / F1, mean and standard deviation over folds) is written as
Markdown and CSV, with confusion-matrix PNGs. A run that is interrupted resumes: finished
members and collected predictions are kept, an unfinished member is trained again.

    python -m lightning_fer cv --config configs/demo/cv.yaml
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import time
from pathlib import Path

import torch
import yaml

from lightning_fer.ensemble.strategies import EnsembleStrategy

log = logging.getLogger(__name__)

METRICS = ("acc", "balanced_acc", "precision", "recall", "f1")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def scores(pred_scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """The Table II figures for one set of predictions."""
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


def _member_name(config: str) -> str:
    return Path(config).stem


def _trainer_override(out: Path, monitor: str) -> dict:
    return {
        "test_after_fit": False,
        "trainer": {
            "default_root_dir": str(out),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(out), "name": "logs"}},
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(out / "checkpoints"), "filename": "best",
                                         "monitor": monitor, "mode": "max", "enable_version_counter": False}},
                          {"class_path": "lightning_fer.callbacks.FERPlots"}],
        },
    }


def run_cv(
    members: list[str],
    output_dir: str = "runs/cv",
    members_dir: str | None = None,
    folds: list[int] | None = None,
    num_folds: int = 5,
    seeds: list[int] | None = None,
    views: list[str] = ["face"],  # noqa: B006
    strategies: list[EnsembleStrategy] | None = None,
    overrides: list[str] = [],  # noqa: B006
    monitor: str = "val/acc",
    image_size: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    wandb_project: str | None = None,
) -> dict:
    """Train, collect, fit and evaluate; returns the per-fold figures.

    Args:
        members: FERClassifier config files, one per member (e.g. ``configs/demo/resnet50.yaml``).
        output_dir: where predictions, the table and the pictures go.
        members_dir: where members are trained and looked for (default ``output_dir``), so that
            several ensembles (face, regions) can share the members of one run.
        folds: which folds to run (default: all ``num_folds``).
        num_folds: number of folds (passed to every member's data module).
        seeds: train every member once per seed (``seed_everything``; the folds stay those
            of the data's own seed), to see the spread that training randomness alone gives.
            Default: one run with each config's own seed.
        views: regions the ensembles look at (``[face]``, or the paper's five regions).
        strategies: ensemble strategies (``class_path`` in YAML); default hard vote, soft vote
            and stacking.
        overrides: command-line overrides applied to every member's fit, e.g.
            ``--trainer.max_epochs=5``.
        monitor: metric whose best value picks each member's checkpoint.
        image_size: size of the views collected for the ensembles (default: the largest member
            size; each member gets its own size back by resizing).
        batch_size: batch size when collecting predictions.
        device: ``auto``, ``cpu`` or ``cuda``.
        wandb_project: also log Table II (a W&B table) and the confusion matrices (images) to
            this W&B project (offline without credentials or with ``WANDB_MODE=offline``).
    """
    from lightning_fer.cli import main as cli_main
    from lightning_fer.ensemble.functional import missing_views
    from lightning_fer.ensemble.module import EnsembleModule, check_held_out
    from lightning_fer.ensemble.strategies import HardVote, SoftVote, Stacking
    from lightning_fer.plots import plot_confusion

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    mdir = Path(members_dir) if members_dir else out
    folds = list(range(num_folds)) if folds is None else list(folds)
    strategies = list(strategies) if strategies else [HardVote(), SoftVote(), Stacking()]
    names = [_member_name(m) for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"member configs must have distinct file names, got {names}")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    t_start = time.perf_counter()

    # A run is one (fold, seed); without seeds it is named by its fold alone.
    runs = [(k, s) for k in folds for s in (seeds if seeds else [None])]

    def run_name(k: int, s: int | None) -> str:
        return f"fold{k}" if s is None else f"fold{k}-seed{s}"

    # 1. Train every member on every fold (skipping what a previous run finished).
    for k, sd in runs:
        seed_arg = [] if sd is None else [f"--seed_everything={sd}"]
        for cfg, name in zip(members, names):
            run_dir = mdir / run_name(k, sd) / name
            done = run_dir / "done.json"
            if done.is_file():
                log.info("%s, %s: already trained, kept", run_name(k, sd), name)
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            override = run_dir / "cv_override.yaml"
            _atomic_write(override, yaml.safe_dump(_trainer_override(run_dir, monitor)))
            t0 = time.perf_counter()
            cli = cli_main(["fit", "--config", cfg, "--config", str(override), *overrides, *seed_arg,
                            f"--data.init_args.fold={k}", f"--data.init_args.num_folds={num_folds}"])
            best = cli.trainer.checkpoint_callback.best_model_path
            if not best or not Path(best).is_file():
                raise RuntimeError(f"{run_name(k, sd)}, {name}: training wrote no checkpoint (is {monitor!r} logged?)")
            score = cli.trainer.checkpoint_callback.best_model_score
            _atomic_write(done, json.dumps({"checkpoint": best, "best": float(score) if score is not None else None,
                                            "seconds": time.perf_counter() - t0}))

    # 2. Collect out-of-fold and test predictions of every member on every view.
    all_views = list(views) if "face" in views else ["face", *views]
    sel = torch.tensor([all_views.index(v) for v in views])
    collected = {}
    for k, sd in runs:
        rn = run_name(k, sd)
        pred_file = out / rn / "predictions.pt"
        pred_file.parent.mkdir(parents=True, exist_ok=True)
        if pred_file.is_file():
            collected[rn] = torch.load(pred_file, map_location="cpu", weights_only=True)
            continue
        ckpts = [json.loads((mdir / rn / n / "done.json").read_text())["checkpoint"] for n in names]
        ens = EnsembleModule(ckpts, HardVote(), views=all_views).to(dev)
        size = image_size or max(int(m.hparams.image_size) for m in ens.members)
        cli = cli_main(["fit", "--config", members[0], *overrides, f"--data.init_args.fold={k}",
                        f"--data.init_args.num_folds={num_folds}", f"--data.init_args.views={json.dumps(all_views)}",
                        f"--data.init_args.image_size={size}", f"--data.init_args.batch_size={batch_size}"], run=False)
        dm = cli.datamodule
        dm.prepare_data()
        dm.setup("fit")
        val_logits, val_labels, val_index, val_located = ens.collect(dm._loader("val", False))
        test_logits, test_labels, test_index, test_located = ens.collect(dm._loader("test", False))
        data_print = dm.fingerprint()
        collected[rn] = {
            "val_logits": val_logits, "val_labels": val_labels, "val_index": val_index, "val_view_mask": val_located,
            "test_logits": test_logits, "test_labels": test_labels, "test_index": test_index,
            "test_view_mask": test_located,
            "mask": ens.mask.cpu(), "regions": [m.region for m in ens.members],
            "class_names": list(ens.class_names),
            "member_prints": [json.dumps(m.data_fingerprint, sort_keys=True) for m in ens.members],
            "data_print": json.dumps(data_print, sort_keys=True),
        }
        _atomic_save(collected[rn], pred_file)
    first = run_name(*runs[0])
    class_names = collected[first]["class_names"]
    c = len(class_names)
    face = all_views.index("face")

    def voters(d: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """What the strategies see of one run's split: the chosen views' logits and, per sample,
        the real member-views (parts not located on a face get no vote; the face fallback)."""
        logits = d[f"{split}_logits"]
        located = d.get(f"{split}_view_mask")  # absent in predictions collected by older versions
        face_members = torch.tensor([r == "face" for r in d["regions"]])
        return missing_views(logits[:, :, sel], d["mask"][:, sel], None if located is None else located[:, sel],
                             logits[:, :, face], face_members)

    # 3. Fit the learning strategies on pooled out-of-fold predictions, each fold checked; with
    #    several seeds, one copy of each strategy per seed, fitted on that seed's members.
    seed_keys = list(dict.fromkeys(sd for _, sd in runs))
    fitted: dict[int | None, list[EnsembleStrategy]] = {}
    for sd in seed_keys:
        own = [k for k, s2 in runs if s2 == sd]
        fitted[sd] = [copy.deepcopy(s) for s in strategies] if len(seed_keys) > 1 else strategies
        for s in fitted[sd]:
            s.setup(len(members), len(views), c)
            if s.requires_fit:
                for k in own:
                    d = collected[run_name(k, sd)]
                    prints = [json.loads(p) if p != "null" else None for p in d["member_prints"]]
                    check_held_out(prints, json.loads(d["data_print"]), [f"{run_name(k, sd)}/{n}" for n in names])
                pairs = [voters(collected[run_name(k, sd)], "val") for k in own]
                labels = torch.cat([collected[run_name(k, sd)]["val_labels"] for k in own])
                s.fit(torch.cat([z for z, _ in pairs]), labels, torch.cat([m for _, m in pairs]))

    # 4. Evaluate every member and every strategy on the test split, per fold.
    rows: dict[str, list[dict]] = {}
    confusion: dict[str, torch.Tensor] = {}
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    def record(name: str, pred: torch.Tensor, labels: torch.Tensor) -> None:
        rows.setdefault(name, []).append(scores(pred, labels, c))
        cm = multiclass_confusion_matrix(pred, labels, c)
        confusion[name] = confusion.get(name, torch.zeros_like(cm)) + cm

    strategy_names = []
    for s in strategies:
        base = s.name
        n = base
        i = 2
        while n in strategy_names:
            n, i = f"{base} ({i})", i + 1
        strategy_names.append(n)
    for k, sd in runs:
        d = collected[run_name(k, sd)]
        logits, labels = d["test_logits"], d["test_labels"]
        for i, name in enumerate(names):
            region = d["regions"][i]
            record(f"{name}" + (f" [{region}]" if region != "face" else ""), logits[:, i, all_views.index(region)], labels)
        test_logits, test_mask = voters(d, "test")
        for s, sname in zip(fitted[sd], strategy_names):
            with torch.no_grad():
                record(sname, s(test_logits, test_mask), labels)

    what = f"{len(folds)} fold(s) {folds} of {num_folds}" + (f" x seeds {list(seeds)}" if seeds else "")
    table = write_table(rows, out, f"{what}; views {views}; {len(collected[first]['test_labels'])} test images")
    pictures = [plot_confusion(cm, class_names, f"{name} (test, summed over runs)",
                               out / f"confusion_{_slug(name)}.png") for name, cm in confusion.items()]
    if wandb_project:
        _log_to_wandb(wandb_project, out, rows, pictures,
                      dict(members=members, folds=folds, seeds=seeds, views=list(views)))
    log.info("cv finished in %.0f s: %s", time.perf_counter() - t_start, out / "table2.md")
    print(table)
    return {"rows": rows, "table": out / "table2.md", "pictures": pictures}


def _log_to_wandb(project: str, out: Path, rows: dict[str, list[dict]], pictures: list[Path], config: dict) -> None:
    import numpy as np
    import wandb

    from lightning_fer.loggers import wandb_has_credentials

    offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_has_credentials()
    if offline:
        log.warning("W&B: logging the cv run offline to %s", out)
    run = wandb.init(project=project, dir=str(out), mode="offline" if offline else "online", job_type="cv", config=config)
    columns = ["model", "runs"] + [f"{m}_mean" for m in METRICS] + [f"{m}_std" for m in METRICS]
    data = []
    for name, per_fold in rows.items():
        arr = np.array([[f[m] for m in METRICS] for f in per_fold])
        std = arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(len(METRICS))
        data.append([name, len(per_fold), *arr.mean(0).tolist(), *std.tolist()])
    run.log({"table2": wandb.Table(columns=columns, data=data),
             **{f"confusion/{p.stem.removeprefix('confusion_')}": wandb.Image(str(p)) for p in pictures}})
    for row in data:
        run.summary[f"{row[0]}/acc_mean"] = row[2]
    run.finish()
    wandb.teardown()  # end the W&B session this run started, so later runs take fresh settings


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()


def write_table(rows: dict[str, list[dict]], out: Path, caption: str) -> str:
    """Table II as Markdown and CSV (mean and sample standard deviation over runs: folds x seeds)."""
    import numpy as np

    head = ["model", "runs"] + [f"{m} mean" for m in METRICS] + [f"{m} std" for m in METRICS]
    csv_rows, md = [], []
    md.append(f"Table II: test split, {caption}\n")
    md.append("| model | accuracy | balanced acc. | macro precision | macro recall | macro F1 |")
    md.append("|---|---|---|---|---|---|")
    for name, per_fold in rows.items():
        arr = np.array([[f[m] for m in METRICS] for f in per_fold]) * 100
        mean = arr.mean(0)
        std = arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(len(METRICS))
        md.append(f"| {name} | " + " | ".join(f"{a:.1f} ± {b:.1f}" for a, b in zip(mean, std)) + " |")
        csv_rows.append([name, len(per_fold), *[f"{v:.4f}" for v in mean], *[f"{v:.4f}" for v in std]])
    text = "\n".join(md) + "\n"
    _atomic_write(out / "table2.md", text)
    tmp = out / f".table2.csv.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(csv_rows)
    os.replace(tmp, out / "table2.csv")
    return text


def parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="python -m lightning_fer cv", description=__doc__, parser_mode="omegaconf")
    p.add_argument("--config", action=ActionConfigFile)
    p.add_function_arguments(run_cv, fail_untyped=False)
    return p


def main(argv: list[str]) -> dict:
    """Parse ``argv`` (``--config FILE`` and/or ``--key=value``) and run."""
    p = parser()
    cfg = p.parse_args(argv)
    init = p.instantiate(cfg) if hasattr(p, "instantiate") else p.instantiate_classes(cfg)
    kwargs = {k: v for k, v in init.items() if k != "config"}
    return run_cv(**kwargs)
