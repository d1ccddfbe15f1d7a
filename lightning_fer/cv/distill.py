"""Distillation in a ``cv`` run: who teaches, and the teachers' soft targets on the training
images (``soft_targets.pt``) that the students (``FERClassifier(teacher=...)``) learn from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from lightning_fer.cv.plan import Plan
from lightning_fer.cv.predictions import checkpoint_source, run_datamodule
from lightning_fer.ensemble.members import load_member
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.fastpath import choose
from lightning_fer.models import distill
from lightning_fer.shipped import PREFIX, resolve_member

log = logging.getLogger(__name__)

__all__ = ["member_net", "teachers", "write_soft_targets"]


def member_net(plan: Plan, ckpts: list[str], views: list[str], image_size: int | None = None) -> tuple[EnsembleNet, object]:
    """Checkpoints as one :class:`EnsembleNet` on ``views`` (with the run's flip) on the run's
    device, and the fast path to run it under."""
    fp = choose(plan.collect.fast_path, plan.device.type)
    members = [load_member(c, i).set_channels_last(fp.channels_last) for i, c in enumerate(ckpts)]
    return EnsembleNet(members, views=views, image_size=image_size, flip=plan.collect.flip).to(plan.device), fp


def teachers(plan: Plan, k: int, seed: int | None) -> dict[str, str]:
    """The networks that teach the students, name -> checkpoint: ``teacher_members`` names
    whole-face members, snapshots (``resnet18#e5``) or all of a member's snapshots
    (``resnet18#snapshots``) or shipped models (``pretrained:fer2013``); default every
    whole-face member."""
    known: dict[str, str] = {}
    snapshots: dict[str, list[str]] = {}
    for s in plan.members:
        if s.expert or s.student:
            continue
        done = json.loads((plan.member_dir(k, seed, s.name) / "done.json").read_text())
        known[s.name] = done["checkpoint"]
        for snap in done.get("snapshots") or []:
            name = f"{s.name}#e{int(Path(snap).stem.split('=')[-1])}"
            known[name] = snap
            snapshots.setdefault(s.name, []).append(name)
    wanted = plan.lineup.teacher_members or [s.name for s in plan.members if not s.expert and not s.student]
    for w in wanted:  # a shipped model teaches too: pretrained:fer2013
        if w.startswith(PREFIX):
            known[w] = str(resolve_member(w))
    names = [n for w in wanted for n in (snapshots.get(w.removesuffix("#snapshots"), [None])
                                         if w.endswith("#snapshots") else [w])]
    bad = [w for w, n in zip(wanted, names) if n not in known]
    if bad or not names:
        raise ValueError(f"teacher_members {bad or wanted} are not whole-face members or their snapshots of this run; "
                         f"known: {sorted(known)} (and <member>#snapshots)")
    return {n: known[n] for n in names}


def write_soft_targets(plan: Plan, k: int, seed: int | None) -> Path:
    """The teachers' probabilities on the run's training images (no augmentation): their
    soft vote on the face (and its mirror with ``flip``), for the
    students (:func:`teachers` says who teaches). Kept from an earlier run only where the same
    teachers' same checkpoints (path and modification time) made them with the same flip and size."""
    path = plan.soft_targets(k, seed)
    who = teachers(plan, k, seed)
    sources = {"teachers": {name: checkpoint_source(ckpt) for name, ckpt in who.items()},
               "flip": plan.collect.flip, "image_size": plan.collect.image_size}
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True).get("sources")
        if saved == sources:
            return path
        log.info("%s was made by other teachers, checkpoints or views (%s): made again from %s (students "
                 "already trained on the old ones are kept: delete their folders to retrain them)", path,
                 saved or "not recorded", sources)
    net, fp = member_net(plan, list(who.values()), ["face"], plan.collect.image_size)
    # The students' data (a teacher's config may train on fewer images: every student image needs a target).
    student = next(s.config for s in plan.members if s.student)
    dm = run_datamodule(plan, k, ["face"], student, image_size=net.image_size, training={"augment": False})
    distill.write_soft_targets(net, dm, path, list(who), fp.autocast(), sources)
    log.info("soft targets of %s on %d training images: %s", list(who), len(dm.splits["train"]), path)
    return path
