"""Running a ``cv`` experiment: train every member on every fold (and seed), collect their
predictions on every view, fit the learning strategies out of fold, and score everything."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_fer.build import build
from lightning_fer.cv.report import scores
from lightning_fer.ensemble.functional import missing_views
from lightning_fer.ensemble.members import check_held_out, load_member
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.ensemble.strategies import EnsembleStrategy
from lightning_fer.fastpath import choose
from lightning_fer.files import save_torch, write_text

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What one ``cv`` call runs: member configs, runs (fold, seed) and where things go."""

    members: list[str]
    out: Path
    members_dir: Path
    runs: list[tuple[int, int | None]]
    num_folds: int
    views: list[str]
    overrides: Sequence[str]
    monitor: str
    batch_size: int
    image_size: int | None
    device: torch.device
    fast_path: str = "auto"

    @property
    def names(self) -> list[str]:
        return [Path(m).stem for m in self.members]

    @property
    def all_views(self) -> list[str]:
        """The collected views: the ensembles' views, with the face first where it is not among them."""
        return list(self.views) if "face" in self.views else ["face", *self.views]

    @staticmethod
    def run_name(k: int, seed: int | None) -> str:
        return f"fold{k}" if seed is None else f"fold{k}-seed{seed}"

    def folds_override(self, k: int) -> dict:
        return {"data": {"init_args": {"fold": k, "num_folds": self.num_folds}}}


def trainer_override(out: Path, monitor: str) -> dict:
    """Where a member's run writes: logs, its best checkpoint (by ``monitor``) and plots."""
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


def train_member(plan: Plan, config: str, name: str, k: int, seed: int | None) -> Path:
    """Train one member on fold ``k`` unless a finished run is there; returns its ``done.json``."""
    run = plan.run_name(k, seed)
    run_dir = plan.members_dir / run / name
    done = run_dir / "done.json"
    if done.is_file():
        log.info("%s, %s: already trained, kept", run, name)
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seeded = [] if seed is None else [{"seed_everything": seed}]
    built = build(config, trainer_override(run_dir, plan.monitor), {"fast_path": plan.fast_path}, list(plan.overrides),
                  *seeded, plan.folds_override(k))
    built.trainer.fit(built.model, datamodule=built.datamodule)
    ckpt = built.trainer.checkpoint_callback
    if ckpt is None or not ckpt.best_model_path or not Path(ckpt.best_model_path).is_file():
        raise RuntimeError(f"{run}, {name}: training wrote no checkpoint (is {plan.monitor!r} logged?)")
    score = ckpt.best_model_score
    write_text(done, json.dumps({"checkpoint": ckpt.best_model_path, "best": float(score) if score is not None else None,
                                 "seconds": time.perf_counter() - t0}))
    return done


def collect(plan: Plan, k: int, seed: int | None) -> dict:
    """Every member's logits on every view of fold ``k`` (out of fold) and of the test split,
    with labels, indices and located views; saved, and read back on a rerun."""
    run = plan.run_name(k, seed)
    pred_file = plan.out / run / "predictions.pt"
    if pred_file.is_file():
        return torch.load(pred_file, map_location="cpu", weights_only=True)
    ckpts = [json.loads((plan.members_dir / run / n / "done.json").read_text())["checkpoint"] for n in plan.names]
    fp = choose(plan.fast_path, plan.device.type)
    members = [load_member(c, i).set_channels_last(fp.channels_last) for i, c in enumerate(ckpts)]
    net = EnsembleNet(members, views=plan.all_views, image_size=plan.image_size).to(plan.device)
    data = {"views": plan.all_views, "image_size": net.image_size, "batch_size": plan.batch_size}
    dm = build(plan.members[0], list(plan.overrides), plan.folds_override(k), {"data": {"init_args": data}}).datamodule
    dm.prepare_data()
    dm.setup("fit")
    d: dict = {}
    for split in ("val", "test"):
        with fp.autocast():
            logits, labels, index, located = net.collect(dm.loader(split, distributed=False))
        d.update({f"{split}_logits": logits, f"{split}_labels": labels, f"{split}_index": index,
                  f"{split}_view_mask": located})
    d.update(mask=net.mask.cpu(), regions=[m.region for m in net.members], class_names=list(net.class_names),
             member_prints=[json.dumps(m.data_fingerprint, sort_keys=True) for m in net.members],
             data_print=json.dumps(dm.fingerprint(), sort_keys=True))
    save_torch(d, pred_file)
    return d


def voters(plan: Plan, d: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """What the strategies see of one run's split: the ensembles' views' logits and, per sample,
    the real member-views (parts not located on a face get no vote; the face fallback)."""
    all_views = plan.all_views
    sel = torch.tensor([all_views.index(v) for v in plan.views])
    logits = d[f"{split}_logits"]
    located = d.get(f"{split}_view_mask")  # absent in predictions collected by older versions
    face_members = torch.tensor([r == "face" for r in d["regions"]])
    return missing_views(logits[:, :, sel], d["mask"][:, sel], None if located is None else located[:, sel],
                         logits[:, :, all_views.index("face")], face_members)


def fit_strategies(plan: Plan, collected: dict[str, dict], strategies: list[EnsembleStrategy],
                   num_classes: int) -> dict[int | None, list[EnsembleStrategy]]:
    """Per seed, the strategies fitted on that seed's pooled out-of-fold predictions (each
    fold's members checked against the fold they were held out from)."""
    seeds = list(dict.fromkeys(sd for _, sd in plan.runs))
    fitted: dict[int | None, list[EnsembleStrategy]] = {}
    for sd in seeds:
        own = [plan.run_name(k, s) for k, s in plan.runs if s == sd]
        fitted[sd] = [copy.deepcopy(s) for s in strategies] if len(seeds) > 1 else strategies
        for s in fitted[sd]:
            s.setup(len(plan.members), len(plan.views), num_classes)
            if not s.requires_fit:
                continue
            for run in own:
                d = collected[run]
                prints = [json.loads(p) if p != "null" else None for p in d["member_prints"]]
                check_held_out(prints, json.loads(d["data_print"]), [f"{run}/{n}" for n in plan.names])
            pairs = [voters(plan, collected[run], "val") for run in own]
            labels = torch.cat([collected[run]["val_labels"] for run in own])
            s.fit(torch.cat([z for z, _ in pairs]), labels, torch.cat([m for _, m in pairs]))
    return fitted


def unique_names(strategies: list[EnsembleStrategy]) -> list[str]:
    """Row names of the strategies: their ``name``, numbered where two share one."""
    names: list[str] = []
    for s in strategies:
        n, i = s.name, 2
        while n in names:
            n, i = f"{s.name} ({i})", i + 1
        names.append(n)
    return names


def evaluate(plan: Plan, collected: dict[str, dict], fitted: dict, row_names: list[str], num_classes: int):
    """Table II figures per run for every member (on its own region) and every strategy, and the
    confusion matrices summed over runs."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    rows: dict[str, list[dict]] = {}
    confusion: dict[str, torch.Tensor] = {}

    def record(name: str, pred: torch.Tensor, labels: torch.Tensor) -> None:
        rows.setdefault(name, []).append(scores(pred, labels, num_classes))
        cm = multiclass_confusion_matrix(pred, labels, num_classes)
        confusion[name] = confusion.get(name, torch.zeros_like(cm)) + cm

    for k, sd in plan.runs:
        d = collected[plan.run_name(k, sd)]
        logits, labels = d["test_logits"], d["test_labels"]
        for i, name in enumerate(plan.names):
            region = d["regions"][i]
            record(name + (f" [{region}]" if region != "face" else ""), logits[:, i, plan.all_views.index(region)], labels)
        z, mask = voters(plan, d, "test")
        with torch.no_grad():
            for s, row in zip(fitted[sd], row_names):
                record(row, s(z, mask), labels)
    return rows, confusion
