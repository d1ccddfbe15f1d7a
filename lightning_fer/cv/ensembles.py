"""The ensembles of a ``cv`` run: which groups of member-views the strategies combine, what they
see of each, and the strategies fitted on the pooled out-of-fold predictions (after the leak check)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import torch

from lightning_fer.cv.plan import FLIP_VIEW, Plan
from lightning_fer.cv.predictions import RunPredictions, collected_members, member_datamodule
from lightning_fer.ensemble.members import check_held_out
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.ensemble.strategies import EnsembleStrategy

__all__ = ["Group", "check_members", "fit_strategies", "groups", "unique_names", "voters"]


@dataclass
class Group:
    """An ensemble to score: some members on some views (``mask`` ``[members, V]``)."""

    label: str
    members: list[int]
    mask: torch.Tensor

    def suffix(self) -> str:
        return f" [{self.label}]" if self.label else ""


def groups(plan: Plan, d: RunPredictions) -> list[Group]:
    """The ensembles of a run. The whole-face members on the ensembles' views make the table's
    plain rows; where the views hold the face and parts, also the face alone (``[faces]``) and
    the parts alone (``[regions]``: the paper's vote with whole-face members); with region
    experts, the experts on their regions (``[experts]``) and the face members on the face with
    the experts (``[faces + experts]``); and each member's snapshots on the face. The mirrored
    face (``flip``) goes wherever the face does."""
    views, kinds = d.views, d.kinds
    faces = [i for i, kd in enumerate(kinds) if kd == "face"]
    experts = [i for i, kd in enumerate(kinds) if kd == "expert"]
    face_cols = [views.index(v) for v in ("face", FLIP_VIEW) if v in views]
    parts = [v for v in plan.collect.views if v != "face"]
    ens_views = list(plan.collect.views) + ([FLIP_VIEW] if plan.collect.flip and "face" in plan.collect.views else [])

    def mask(rows: list[int], cols_of) -> torch.Tensor:
        m = torch.zeros(len(rows), len(views), dtype=torch.bool)
        for r, i in enumerate(rows):
            m[r, cols_of(i)] = True
        return m & d.collected[rows]

    out = [Group("", faces, mask(faces, lambda i: [views.index(v) for v in ens_views]))] if faces else []
    for label, names in plan.lineup.member_groups.items():  # the user's named ensembles of face members
        chosen = [d.names.index(n) for n in names]
        out.append(Group(label, chosen, mask(chosen, lambda i: [views.index(v) for v in ens_views])))
    if faces and parts and "face" in plan.collect.views:
        out.append(Group("faces", faces, mask(faces, lambda i: face_cols)))
        out.append(Group("regions", faces, mask(faces, lambda i: [views.index(v) for v in parts])))
    if experts:
        out.append(Group("experts", experts, mask(experts, lambda i: [views.index(d.regions[i])])))
        if faces:
            both = faces + experts
            out.append(Group("faces + experts", both, mask(both, lambda i: face_cols if kinds[i] == "face"
                                                           else [views.index(d.regions[i])])))
    for owner in dict.fromkeys(kd.split(":", 1)[1] for kd in kinds if kd.startswith("snapshot:")):
        snaps = [i for i, kd in enumerate(kinds) if kd == f"snapshot:{owner}"]
        out.append(Group(f"snapshots {owner}", snaps, mask(snaps, lambda i: face_cols if d.regions[i] == "face"
                                                           else [views.index(d.regions[i])])))
    return out


def voters(d: RunPredictions, split: str, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """What the strategies see of one group on one split: its member-views' logits and, per
    sample, the real ones (parts not located on a face get no vote; the face fallback)."""
    cols = [j for j in range(len(d.views)) if bool(group.mask[:, j].any())]
    idx = torch.tensor(group.members)
    logits = d.split(split).logits[:, idx][:, :, cols]
    face_members = torch.tensor([d.regions[i] == "face" for i in group.members])
    face = d.split(split).logits[:, idx, d.views.index("face")]  # the fallback, where the group leaves the face out
    return EnsembleNet.cached_voters(logits, group.mask[:, cols], d.split(split).view_mask[:, cols], face_members,
                                     [d.views[j] for j in cols], face)


def check_members(plan: Plan, k: int, seed: int | None, d: RunPredictions, members: list[int], cache: dict) -> None:
    """:func:`check_held_out` for the given members of a run: each against the data of fold
    ``k`` as it was built for that member (its config and every override ``cv`` gave it). Members
    trained on a stratified part of the training folds (``training.fraction``) or on a bootstrap
    resample of them (a bag) have other training images than the data the predictions were
    collected with, but the same held-out fold (same source, folds, seed and fold are checked)."""
    specs = {s.name: s for s in plan.members}
    owner = {m.name: m.name.split("#")[0] for m in collected_members(plan, k, seed)}  # a snapshot: its member's
    prints, data_prints = [], []
    for i in members:
        mp = json.loads(d.member_prints[i]) if d.member_prints[i] != "null" else None
        data = json.loads(d.data_print)
        spec = specs.get(owner.get(d.names[i], ""))
        if mp and spec and mp.get("train_hash") != data.get("train_hash"):
            if (k, seed, spec.name) not in cache:
                cache[k, seed, spec.name] = member_datamodule(plan, spec, k, seed).fingerprint()
            data = cache[k, seed, spec.name]
        prints.append(mp)
        data_prints.append(data)
    for i, mp, data in zip(members, prints, data_prints):
        check_held_out([mp], data, [f"{plan.run_name(k, seed)}/{d.names[i]}"])


def fit_strategies(plan: Plan, collected: dict[str, RunPredictions], strategies: list[EnsembleStrategy],
                   num_classes: int) -> dict[tuple[int | None, str], list[EnsembleStrategy]]:
    """Per seed and group, the strategies fitted on that seed's pooled out-of-fold predictions
    (each fold's members checked against the fold they were held out from)."""
    seeds = list(dict.fromkeys(sd for _, sd in plan.runs))
    fitted: dict[tuple[int | None, str], list[EnsembleStrategy]] = {}
    own_prints: dict = {}
    for sd in seeds:
        own = [plan.run_name(k, s) for k, s in plan.runs if s == sd]
        for g_i, group in enumerate(groups(plan, collected[own[0]])):
            fresh = len(seeds) == 1 and g_i == 0
            fitted[sd, group.label] = ss = strategies if fresh else [copy.deepcopy(s) for s in strategies]
            for s in ss:
                s.setup(len(group.members), int(group.mask.any(0).sum()), num_classes)
            if not any(s.requires_fit for s in ss):
                continue
            for (k, _), run in zip([r for r in plan.runs if r[1] == sd], own):  # once per group, not per strategy
                check_members(plan, k, sd, collected[run], group.members, own_prints)
            pairs = [voters(collected[run], "val", group) for run in own]
            z, mask = torch.cat([z for z, _ in pairs]), torch.cat([m for _, m in pairs])
            labels = torch.cat([collected[run].val.labels for run in own])
            for s in ss:
                EnsembleNet.fit_cached(s, z, labels, mask)
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
