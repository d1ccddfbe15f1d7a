"""Running a ``cv`` experiment after training: collect every member's predictions on its views
(each member once, kept on disk), the ensembles
(groups of member-views) the strategies combine, fitting them out of fold, and scoring."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_fer.build import build
from lightning_fer.cv.plan import FLIP_VIEW, MemberSpec, Plan
from lightning_fer.ensemble.members import check_held_out, load_member
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.ensemble.strategies import EnsembleStrategy
from lightning_fer.fastpath import choose
from lightning_fer.files import save_torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collected:
    """A member as collected: its name, region, checkpoint and the views it is run on."""

    name: str
    region: str
    checkpoint: str
    views: tuple[str, ...]
    kind: str  # "face", "expert", "student" or "snapshot:<member>"
    config: str = ""  # the config it was trained from


def collected_members(plan: Plan, k: int, seed: int | None) -> list[Collected]:
    """Every network of a run: the trained members (best checkpoints) and each snapshot."""
    face_views = ("face", FLIP_VIEW) if plan.flip else ("face",)
    out = []
    for spec in plan.members:
        done = json.loads((plan.member_dir(k, seed, spec.name) / "done.json").read_text())
        if spec.expert:
            out.append(Collected(spec.name, spec.region, done["checkpoint"], (spec.region,), "expert", spec.config))
        elif spec.student:
            out.append(Collected(spec.name, "face", done["checkpoint"], face_views, "student", spec.config))
        else:
            out.append(Collected(spec.name, "face", done["checkpoint"], tuple(plan.all_views), "face", spec.config))
        for snap in done.get("snapshots") or []:  # on the face (an expert's: on its region)
            epoch = int(Path(snap).stem.split("=")[-1])
            out.append(Collected(f"{spec.name}#e{epoch}", spec.region, snap, (spec.region,) if spec.expert else face_views,
                                 f"snapshot:{spec.name}", spec.config))
    return out


def run_datamodule(plan: Plan, k: int, views: list[str], config: str | None = None, **data):
    """The data of fold ``k`` as ``config``'s member saw it (default the first member's; its
    model must take the views' size), yielding ``views`` (``data`` overrides)."""
    init = {"views": views, "batch_size": plan.batch_size, **data}
    cfg = config or plan.members[0].config
    dm = build(cfg, list(plan.overrides), plan.folds_override(k), {"data": {"init_args": init}}).datamodule
    dm.prepare_data()
    dm.setup("fit")
    return dm


def member_datamodule(plan: Plan, spec, k: int, seed: int | None):
    """The data of fold ``k`` exactly as ``cv`` built it to train ``spec`` (its config, the run's
    overrides, its own and its bag's), set up for ``fit``: what its data fingerprint came from."""
    from lightning_fer.cv.plan import member_override, own_overrides

    dm = build(spec.config, list(plan.overrides), own_overrides(spec, plan), plan.folds_override(k),
               *member_override(spec, plan, k, seed)).datamodule
    dm.prepare_data()
    dm.setup("fit")
    return dm


def collect(plan: Plan, k: int, seed: int | None) -> dict:
    """Every member's logits on its views of fold ``k`` (out of fold) and of the test split:
    ``{split}_logits`` ``[N, M, V, C]`` over :attr:`Plan.all_views` (zeros where a member is not
    run), ``collected`` ``[M, V]``, labels, indices and located views. Each member's logits are
    kept in ``logits/<name>.pt``, so a rerun with more members collects only those."""
    run_dir = plan.out / plan.run_name(k, seed)
    pred_file = run_dir / "predictions.pt"
    members = collected_members(plan, k, seed)
    names = [m.name for m in members]
    if pred_file.is_file():
        d = torch.load(pred_file, map_location="cpu", weights_only=True)
        if d.get("names") == names and d.get("views") == plan.all_views:
            return d
    sets: dict[tuple[str, ...], list[Collected]] = {}  # students and snapshots: the face only
    for m in members:
        if not (run_dir / "logits" / f"{m.name}.pt").is_file():
            small = m.region == "face" and (m.kind == "student" or m.kind.startswith("snapshot"))
            sets.setdefault(("face",) if small else tuple(plan.data_views), []).append(m)
    for views, todo in sets.items():
        _collect_members(plan, k, run_dir, todo, list(views))
    return _assemble(plan, run_dir, members, pred_file)


def _collect_members(plan: Plan, k: int, run_dir: Path, todo: list[Collected], data_views: list[str]) -> None:
    """Each member sees its views drawn at the size it was trained on (one data module per size:
    a 48 px member is not shown faces drawn at 75 px and shrunk), unless the run names one size."""
    fp = choose(plan.fast_path, plan.device.type)
    loaded = [load_member(m.checkpoint, i).set_channels_last(fp.channels_last) for i, m in enumerate(todo)]
    by_size: dict[int, list[int]] = {}
    for i, member in enumerate(loaded):
        by_size.setdefault(plan.image_size or member.image_size, []).append(i)
    for size, idx in by_size.items():  # the data from the largest member's config, which takes this size
        net = EnsembleNet([loaded[i] for i in idx], views=data_views, image_size=size, flip=plan.flip).to(plan.device)
        dm = run_datamodule(plan, k, data_views, todo[max(idx, key=lambda i: loaded[i].image_size)].config or None,
                            image_size=size)
        with fp.autocast():
            per_split = {split: net.collect(dm.loader(split, distributed=False)) for split in ("val", "test")}
        views = net.voter_views
        for j, m in enumerate(todo[i] for i in idx):
            cols = [views.index(v) for v in m.views]
            d = {f"{s}_{key}": val for s, (lg, lab, ix, loc) in per_split.items()
                 for key, val in (("logits", lg[:, j][:, cols]), ("labels", lab), ("index", ix), ("view_mask", loc[:, cols]))}
            d.update(views=list(m.views), class_names=list(net.class_names), data_print=json.dumps(dm.fingerprint(), sort_keys=True),
                     member_print=json.dumps(net.members[j].data_fingerprint, sort_keys=True))
            save_torch(d, run_dir / "logits" / f"{m.name}.pt")
        log.info("collected %s at %d px on %s", [todo[i].name for i in idx], size, views)


def _assemble(plan: Plan, run_dir: Path, members: list[Collected], pred_file: Path) -> dict:
    parts = [torch.load(run_dir / "logits" / f"{m.name}.pt", map_location="cpu", weights_only=True) for m in members]
    views = plan.all_views
    d: dict = {"names": [m.name for m in members], "views": views, "regions": [m.region for m in members],
               "kinds": [m.kind for m in members], "class_names": parts[0]["class_names"],
               "member_prints": [p["member_print"] for p in parts], "data_print": parts[0]["data_print"]}
    collected = torch.zeros(len(members), len(views), dtype=torch.bool)
    for split in ("val", "test"):
        ref = parts[0]
        n, c = ref[f"{split}_logits"].shape[0], ref[f"{split}_logits"].shape[-1]
        logits = torch.zeros(n, len(members), len(views), c)
        located = torch.ones(n, len(views), dtype=torch.bool)
        for i, p in enumerate(parts):
            if not torch.equal(p[f"{split}_index"], ref[f"{split}_index"]):
                raise RuntimeError(f"{run_dir}: {members[i].name}'s {split} predictions are for other images; "
                                   f"delete {run_dir / 'logits'} and rerun")
            for j, v in enumerate(p["views"]):
                logits[:, i, views.index(v)] = p[f"{split}_logits"][:, j]
                located[:, views.index(v)] = p[f"{split}_view_mask"][:, j]
                collected[i, views.index(v)] = True
        d.update({f"{split}_logits": logits, f"{split}_labels": ref[f"{split}_labels"],
                  f"{split}_index": ref[f"{split}_index"], f"{split}_view_mask": located})
    d["collected"] = d["mask"] = collected
    save_torch(d, pred_file)
    return d


@dataclass
class Group:
    """An ensemble to score: some members on some views (``mask`` ``[members, V]``)."""

    label: str
    members: list[int]
    mask: torch.Tensor

    def suffix(self) -> str:
        return f" [{self.label}]" if self.label else ""


def groups(plan: Plan, d: dict) -> list[Group]:
    """The ensembles of a run. The whole-face members on the ensembles' views make the table's
    plain rows; where the views hold the face and parts, also the face alone (``[faces]``) and
    the parts alone (``[regions]``: the paper's vote with whole-face members); with region
    experts, the experts on their regions (``[experts]``) and the face members on the face with
    the experts (``[faces + experts]``); and each member's snapshots on the face. The mirrored
    face (``flip``) goes wherever the face does."""
    views, kinds = d["views"], d["kinds"]
    faces = [i for i, kd in enumerate(kinds) if kd == "face"]
    experts = [i for i, kd in enumerate(kinds) if kd == "expert"]
    face_cols = [views.index(v) for v in ("face", FLIP_VIEW) if v in views]
    parts = [v for v in plan.views if v != "face"]
    ens_views = list(plan.views) + ([FLIP_VIEW] if plan.flip and "face" in plan.views else [])

    def mask(rows: list[int], cols_of) -> torch.Tensor:
        m = torch.zeros(len(rows), len(views), dtype=torch.bool)
        for r, i in enumerate(rows):
            m[r, cols_of(i)] = True
        return m & d["collected"][rows]

    out = [Group("", faces, mask(faces, lambda i: [views.index(v) for v in ens_views]))] if faces else []
    for label, names in plan.member_groups.items():  # the user's named ensembles of face members
        chosen = [d["names"].index(n) for n in names]
        out.append(Group(label, chosen, mask(chosen, lambda i: [views.index(v) for v in ens_views])))
    if faces and parts and "face" in plan.views:
        out.append(Group("faces", faces, mask(faces, lambda i: face_cols)))
        out.append(Group("regions", faces, mask(faces, lambda i: [views.index(v) for v in parts])))
    if experts:
        out.append(Group("experts", experts, mask(experts, lambda i: [views.index(d["regions"][i])])))
        if faces:
            both = faces + experts
            out.append(Group("faces + experts", both, mask(both, lambda i: face_cols if kinds[i] == "face"
                                                           else [views.index(d["regions"][i])])))
    for owner in dict.fromkeys(kd.split(":", 1)[1] for kd in kinds if kd.startswith("snapshot:")):
        snaps = [i for i, kd in enumerate(kinds) if kd == f"snapshot:{owner}"]
        out.append(Group(f"snapshots {owner}", snaps, mask(snaps, lambda i: face_cols if d["regions"][i] == "face"
                                                           else [views.index(d["regions"][i])])))
    return out


def voters(d: dict, split: str, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """What the strategies see of one group on one split: its member-views' logits and, per
    sample, the real ones (parts not located on a face get no vote; the face fallback)."""
    cols = [j for j in range(len(d["views"])) if bool(group.mask[:, j].any())]
    idx = torch.tensor(group.members)
    logits = d[f"{split}_logits"][:, idx][:, :, cols]
    face_members = torch.tensor([d["regions"][i] == "face" for i in group.members])
    face = d[f"{split}_logits"][:, idx, d["views"].index("face")]  # the fallback, where the group leaves the face out
    return EnsembleNet.cached_voters(logits, group.mask[:, cols], d[f"{split}_view_mask"][:, cols], face_members,
                                     [d["views"][j] for j in cols], face)


def check_members(plan: Plan, k: int, seed: int | None, d: dict, members: list[int], cache: dict) -> None:
    """:func:`check_held_out` for the given members of a run: each against the data of fold
    ``k`` as it was built for that member (its config and every override ``cv`` gave it). Members
    trained on a stratified part of the training folds (``training.fraction``) or on a bootstrap
    resample of them (a bag) have other training images than the data the predictions were
    collected with, but the same held-out fold (same source, folds, seed and fold are checked)."""
    specs = {s.name: s for s in plan.members}
    owner = {m.name: m.name.split("#")[0] for m in collected_members(plan, k, seed)}  # a snapshot: its member's
    prints, data_prints = [], []
    for i in members:
        mp = json.loads(d["member_prints"][i]) if d["member_prints"][i] != "null" else None
        data = json.loads(d["data_print"])
        spec = specs.get(owner.get(d["names"][i], ""))
        if mp and spec and mp.get("train_hash") != data.get("train_hash"):
            if (k, seed, spec.name) not in cache:
                cache[k, seed, spec.name] = member_datamodule(plan, spec, k, seed).fingerprint()
            data = cache[k, seed, spec.name]
        prints.append(mp)
        data_prints.append(data)
    for i, mp, data in zip(members, prints, data_prints):
        check_held_out([mp], data, [f"{plan.run_name(k, seed)}/{d['names'][i]}"])


def fit_strategies(plan: Plan, collected: dict[str, dict], strategies: list[EnsembleStrategy],
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
            labels = torch.cat([collected[run]["val_labels"] for run in own])
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


__all__ = ["Collected", "Group", "MemberSpec", "Plan", "collect", "fit_strategies", "groups",
           "run_datamodule", "unique_names", "voters"]
