"""Training one ``cv`` member resumably: its config with the run's and its own overrides, where it
writes, what picks its checkpoint, snapshots, and the training time summed over attempts."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from lightning_fer.build import build
from lightning_fer.cv.options import as_layers
from lightning_fer.cv.plan import MemberSpec, Plan
from lightning_fer.files import write_text

log = logging.getLogger(__name__)

__all__ = ["checkpoint_monitor", "member_override", "own_overrides", "train_member"]


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
    if plan.lineup.monitor is not None:
        return plan.lineup.monitor, "max", "cv.monitor"
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
        out += as_layers(plan.experts.overrides)
        data = {"views": [spec.region], **({"image_size": spec.image_size} if spec.image_size else {})}
        out.append({"data": {"init_args": data}, "model": {"init_args": {"region": spec.region}}})
    if spec.student:
        out.append({"model": {"init_args": {"distill": {"teacher": str(plan.soft_targets(k, seed))}}}})
    return out


def own_overrides(spec: MemberSpec, plan: Plan) -> list:
    """``member_overrides`` for this member (by its name, else its config file's stem), as
    :func:`~lightning_fer.build.build`'s override arguments."""
    own = plan.lineup.member_overrides
    return as_layers(own.get(spec.name, own.get(Path(spec.config).stem)))


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
    built = build(spec.config, trainer_override(run_dir, monitor, mode), {"fast_path": plan.collect.fast_path},
                  *as_layers(plan.lineup.overrides), *own_overrides(spec, plan), *seeded, plan.folds_override(k),
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
