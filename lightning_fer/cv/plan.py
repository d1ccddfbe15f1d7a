"""What one ``cv`` call trains: the members (whole-face members, region experts, distilled
students), the runs (fold, seed), and training one member resumably."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from lightning_fer.build import build
from lightning_fer.data.regions import FLIP_VIEW, REGIONS
from lightning_fer.files import write_text

log = logging.getLogger(__name__)

__all__ = ["BUILT_IN_GROUPS", "FLIP_VIEW", "MemberSpec", "Plan", "check_member_groups", "member_specs", "train_member"]


@dataclass(frozen=True)
class MemberSpec:
    """One member of a ``cv`` run.

    Args:
        config: the FERClassifier config file it is trained from.
        name: its name in the table and its folder (``resnet18``, ``resnet18@mouth``,
            ``resnet18.student``).
        region: what it is trained on: ``face`` or a region (a region expert).
        image_size: its training size (``None``: the config's).
        student: trained on the run's soft targets (distillation) after the face members.
        bag: for a bagged member (``<config>.bag<N>``), its number ``N`` >= 1: it trains on a
            bootstrap resample of its training folds (``training.bootstrap``), seeded by ``N``
            and the run's seed, so that every bag and every seed draws another resample.
    """

    config: str
    name: str
    region: str = "face"
    image_size: int | None = None
    student: bool = False
    bag: int | None = None

    def bootstrap_seed(self, seed: int | None) -> int | None:
        """The bootstrap resample's seed in a run of ``seed`` (``None``: not bagged)."""
        return None if self.bag is None else 1000 * (seed or 0) + self.bag

    @property
    def expert(self) -> bool:
        return self.region != "face"


def member_specs(members: Sequence[str], expert_regions: Sequence[str] = (), expert_members: Sequence[str] | None = None,
                 expert_sizes: dict[str, int] | None = None, students: Sequence[str] = (),
                 bags: dict[str, int] | None = None) -> list[MemberSpec]:
    """Whole-face members, then the bagged members (``bags``: how many bootstrap-resampled copies
    of a member, by its config file stem), then each expert config once per region, then the students."""
    sizes = dict(expert_sizes or {})
    bad = [r for r in [*expert_regions, *sizes] if r not in REGIONS or r == "face"]
    if bad:
        raise ValueError(f"expert regions must be among {[r for r in REGIONS if r != 'face']}, got {bad}")
    specs = [MemberSpec(str(m), Path(m).stem) for m in members]
    by_stem = {s.name: s.config for s in specs}
    for stem, n in (bags or {}).items():
        if stem not in by_stem:
            raise ValueError(f"bags: {stem!r} is not a member; bag one of {sorted(by_stem)} (a member config's file stem)")
        if isinstance(n, bool) or int(n) < 1:
            raise ValueError(f"bags: {stem}: the number of bagged copies must be an integer >= 1, got {n!r}")
        specs += [MemberSpec(by_stem[stem], f"{stem}.bag{i}", bag=i) for i in range(1, int(n) + 1)]
    for cfg in (members if expert_members is None else expert_members):
        specs += [MemberSpec(str(cfg), f"{Path(cfg).stem}@{r}", r, sizes.get(r)) for r in expert_regions]
    specs += [MemberSpec(str(s), f"{Path(s).stem}.student", student=True) for s in students]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"member configs must have distinct file names, got {names}")
    return specs


@dataclass
class Plan:
    """What one ``cv`` call runs: members, runs (fold, seed) and where things go."""

    members: list[MemberSpec]
    out: Path
    members_dir: Path
    runs: list[tuple[int, int | None]]
    num_folds: int
    views: list[str]
    overrides: Sequence[str]
    monitor: str | None
    batch_size: int
    image_size: int | None
    device: torch.device
    fast_path: str = "auto"
    flip: bool = False
    teacher_members: list[str] | None = None
    expert_overrides: Sequence[str] = ()
    #: overrides for one member (by name or config file stem), after ``overrides``
    member_overrides: dict[str, list[str]] = field(default_factory=dict)
    #: named ensembles of some whole-face members (``{cheap: [quick_member, xception_member]}``):
    #: every strategy is also fitted and scored over each, on the plain rows' views
    member_groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def all_views(self) -> list[str]:
        """The collected views: the ensembles' views, with the face first where it is not among
        them, and the mirrored face last with ``flip``."""
        views = list(self.views) if "face" in self.views else ["face", *self.views]
        return views + [FLIP_VIEW] if self.flip else views

    @property
    def data_views(self) -> list[str]:
        """The views the data module yields (the mirrored face is made from the face)."""
        return [v for v in self.all_views if v != FLIP_VIEW]

    @staticmethod
    def run_name(k: int, seed: int | None) -> str:
        return f"fold{k}" if seed is None else f"fold{k}-seed{seed}"

    def folds_override(self, k: int) -> dict:
        return {"data": {"init_args": {"fold": k, "num_folds": self.num_folds}}}

    def member_dir(self, k: int, seed: int | None, name: str) -> Path:
        return self.members_dir / self.run_name(k, seed) / name

    def soft_targets(self, k: int, seed: int | None) -> Path:
        return self.out / self.run_name(k, seed) / "soft_targets.pt"


#: the labels of the groups ``cv`` makes itself (see :func:`lightning_fer.cv.run.groups`)
BUILT_IN_GROUPS = ("faces", "regions", "experts", "faces + experts")


def check_member_groups(plan: Plan) -> None:
    """Refuse, before anything trains, a ``member_groups`` entry that names no whole-face member,
    is empty, or takes a label ``cv`` uses itself."""
    faces = [m.name for m in plan.members if not m.expert and not m.student]
    for label, names in plan.member_groups.items():
        if not label or label in BUILT_IN_GROUPS or label.startswith("snapshots "):
            raise ValueError(f"member_groups: {label!r} is a label cv uses itself ({list(BUILT_IN_GROUPS)}); "
                             "name the group otherwise")
        unknown = [n for n in names if n not in faces]
        if not names or unknown:
            raise ValueError(f"member_groups: {label}: {unknown or 'no members'}: list whole-face members "
                             f"among {faces}")


def checkpoint_monitor(config: str | Path) -> tuple[str | None, str]:
    """The metric and mode a member config's ``ModelCheckpoint`` selects by (with its ``base``
    configs): ``(None, "max")`` for a config that keeps its final weights, ``("val/acc", "max")``
    for one without a ``ModelCheckpoint``."""
    from lightning_fer.build import config_layers

    callbacks = None
    for _, layer in config_layers(config):
        found = ((layer or {}).get("trainer") or {}).get("callbacks")
        if found is not None:
            callbacks = found
    for cb in callbacks or []:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
            args = cb.get("init_args") or {}
            return args.get("monitor"), args.get("mode", "min")  # Lightning's default mode
    return "val/acc", "max"


def member_monitor(plan: Plan, spec: MemberSpec) -> tuple[str | None, str, str]:
    """What picks this member's checkpoint: ``cv``'s ``monitor`` where set, else its config's
    (:func:`checkpoint_monitor`); and where that came from, for the log."""
    if plan.monitor is not None:
        return plan.monitor, "max", "cv.monitor"
    monitor, mode = checkpoint_monitor(spec.config)
    return monitor, mode, f"its config {spec.config}"


def trainer_override(out: Path, monitor: str | None, mode: str = "max") -> dict:
    """Where a member's run writes: logs, its best checkpoint (by ``monitor``; ``None``: the
    last epoch's weights), ``last.ckpt`` (every epoch: what an interrupted run resumes from) and plots."""
    return {
        "test_after_fit": False,
        "trainer": {
            "default_root_dir": str(out),
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(out), "name": "logs"}},
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(out / "checkpoints"), "filename": "best", "save_last": True,
                                         "monitor": monitor, "mode": mode, "enable_version_counter": False}},
                          {"class_path": "lightning_fer.callbacks.FERPlots"}],
        },
    }


def member_override(spec: MemberSpec, plan: Plan, k: int, seed: int | None) -> list:
    """What makes a config this member: its region and size, its teacher."""
    out: list = []
    if spec.bag is not None:
        out.append([f"--data.init_args.training.bootstrap={spec.bootstrap_seed(seed)}"])
    if spec.expert:
        out.append(list(plan.expert_overrides))
        data = {"views": [spec.region], **({"image_size": spec.image_size} if spec.image_size else {})}
        out.append({"data": {"init_args": data}, "model": {"init_args": {"region": spec.region}}})
    if spec.student:
        out.append({"model": {"init_args": {"distill": {"teacher": str(plan.soft_targets(k, seed))}}}})
    return out


def own_overrides(spec: MemberSpec, plan: Plan) -> list[str]:
    """``member_overrides`` for this member: by its name, else its config file's stem."""
    own = plan.member_overrides
    return list(own.get(spec.name, own.get(Path(spec.config).stem, [])))


def snapshot_callback(model, trainer, dirpath: Path):
    """For a ``cosine_restarts`` schedule of ``cycles`` > 1: a checkpoint at the end of every
    cycle (``snapshot-epoch=N.ckpt``), the members of a snapshot ensemble; else ``None``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    optim = getattr(model, "optim", None)
    if optim is None or optim.scheduler != "cosine_restarts" or optim.cycles < 2:
        return None
    epochs = trainer.max_epochs or 0
    if epochs % optim.cycles:
        raise ValueError(f"a snapshot schedule needs max_epochs ({epochs}) divisible by cycles ({optim.cycles})")
    return ModelCheckpoint(dirpath=dirpath, filename="snapshot-{epoch}", every_n_epochs=epochs // optim.cycles,
                           save_top_k=-1, monitor=None, enable_version_counter=False)


class _Clock(Callback):
    """Training time summed over attempts: earlier attempts' time (``elapsed.json``, written at
    every epoch end) plus this one's."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path, self.t0 = path, t0
        self.before = float(json.loads(path.read_text())["seconds"]) if path.is_file() else 0.0

    def total(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        write_text(self.path, json.dumps({"seconds": self.total()}))


def train_member(plan: Plan, spec: MemberSpec, k: int, seed: int | None) -> Path:
    """Train one member on fold ``k`` unless a finished run is there; returns its ``done.json``
    (best checkpoint, score, training seconds over all attempts, snapshots, region).

    A run that was interrupted (killed, out of time) resumes from its ``last.ckpt``: weights,
    optimiser, schedule, epoch and the best checkpoint so far."""
    run_dir = plan.member_dir(k, seed, spec.name)
    done = run_dir / "done.json"
    label = f"{plan.run_name(k, seed)}, {spec.name}"
    if done.is_file():
        log.info("%s: already trained, kept", label)
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seeded = [] if seed is None else [{"seed_everything": seed}]
    monitor, mode, said = member_monitor(plan, spec)
    log.info("%s: the checkpoint is chosen by %s (%s)", label,
             f"the best {monitor} ({mode})" if monitor else "the last epoch", said)
    built = build(spec.config, trainer_override(run_dir, monitor, mode), {"fast_path": plan.fast_path},
                  list(plan.overrides), own_overrides(spec, plan), *seeded, plan.folds_override(k),
                  *member_override(spec, plan, k, seed))
    trainer = built.trainer
    snap = snapshot_callback(built.model, trainer, run_dir / "checkpoints")
    if snap is not None:
        trainer.callbacks.append(snap)
    clock = _Clock(run_dir / "elapsed.json", t0)
    trainer.callbacks.append(clock)
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = last.is_file()
    if resumed:
        log.info("%s: resuming an interrupted run from %s", label, last)
    trainer.fit(built.model, datamodule=built.datamodule, ckpt_path=str(last) if resumed else None)
    ckpt = trainer.checkpoint_callback
    if ckpt is None or not ckpt.best_model_path or not Path(ckpt.best_model_path).is_file():
        raise RuntimeError(f"{label}: training wrote no checkpoint (is {monitor!r} logged?)")
    score = ckpt.best_model_score
    snapshots = sorted((run_dir / "checkpoints").glob("snapshot-epoch=*.ckpt"),
                       key=lambda p: int(p.stem.split("=")[-1]))
    write_text(done, json.dumps({"checkpoint": ckpt.best_model_path, "best": float(score) if score is not None else None,
                                 "seconds": clock.total(), "resumed_from": str(last) if resumed else None,
                                 "snapshots": [str(p) for p in snapshots], "region": spec.region,
                                 "monitor": monitor, "monitor_from": said}))
    return done
