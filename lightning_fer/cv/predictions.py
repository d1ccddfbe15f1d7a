"""A ``cv`` run's predictions: every member's logits on its views of the held-out fold and of the
test split, collected once per member (kept on disk, so a rerun with more members collects only
those) and assembled into one typed object per run (:class:`RunPredictions`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_fer.build import build
from lightning_fer.cv.options import as_layers
from lightning_fer.cv.plan import FLIP_VIEW, Plan
from lightning_fer.ensemble.members import load_member
from lightning_fer.ensemble.net import EnsembleNet
from lightning_fer.fastpath import choose
from lightning_fer.files import save_torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """One split's predictions of a run: every member's logits on every view ``[N, M, V, C]``
    (zeros where a member is not run), the labels, the images' indices, and per image the views
    located on it ``[N, V]``."""

    logits: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    view_mask: torch.Tensor


@dataclass(frozen=True)
class RunPredictions:
    """A run's collected predictions (one fold and seed), on :attr:`Plan.all_views`: who the
    members are (``names``, ``regions``, ``kinds``), which member-views were collected
    (``collected`` ``[M, V]``), the data each member and the run saw (fingerprints, as JSON), and
    the ``val`` (out of fold) and ``test`` splits. Saved as a plain dict (``predictions.pt``)."""

    names: list[str]
    views: list[str]
    regions: list[str]
    kinds: list[str]
    class_names: list[str]
    member_prints: list[str]
    data_print: str
    collected: torch.Tensor
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        return {"val": self.val, "test": self.test}[name]

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("names", "views", "regions", "kinds", "class_names", "member_prints",
                                           "data_print", "collected")}
        for name in ("val", "test"):
            d.update({f"{name}_{k}": getattr(self.split(name), k) for k in ("logits", "labels", "index", "view_mask")})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunPredictions:
        splits = {n: Split(*(d[f"{n}_{k}"] for k in ("logits", "labels", "index", "view_mask"))) for n in ("val", "test")}
        return cls(*(d[k] for k in ("names", "views", "regions", "kinds", "class_names", "member_prints", "data_print",
                                    "collected")), **splits)


@dataclass(frozen=True)
class Collected:
    """A member as collected: its name, region, checkpoint and the views it is run on."""

    name: str
    region: str
    checkpoint: str
    views: tuple[str, ...]
    kind: str  # "face", "expert", "student" or "snapshot:<member>"
    config: str = ""  # the config it was trained from

    @property
    def source(self) -> str:
        """The checkpoint and its modification time: cached predictions are its only while this holds."""
        return checkpoint_source(self.checkpoint)


def checkpoint_source(path: str) -> str:
    """A checkpoint as a cache records it: its path and modification time (a retrained member differs)."""
    return f"{path} ({Path(path).stat().st_mtime_ns})"


def collected_members(plan: Plan, k: int, seed: int | None) -> list[Collected]:
    """Every network of a run: the trained members (best checkpoints) and each snapshot."""
    face_views = ("face", FLIP_VIEW) if plan.collect.flip else ("face",)
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
    init = {"views": views, "loader": {"batch_size": plan.collect.batch_size}, **data}
    cfg = config or plan.members[0].config
    dm = build(cfg, *as_layers(plan.lineup.overrides), plan.folds_override(k), {"data": {"init_args": init}}).datamodule
    dm.prepare_data()
    dm.setup("fit")
    return dm


def member_datamodule(plan: Plan, spec, k: int, seed: int | None):
    """The data of fold ``k`` exactly as ``cv`` built it to train ``spec`` (its config, the run's
    overrides, its own and its bag's), set up for ``fit``: what its data fingerprint came from."""
    from lightning_fer.cv.train import member_override, own_overrides

    dm = build(spec.config, *as_layers(plan.lineup.overrides), *own_overrides(spec, plan), plan.folds_override(k),
               *member_override(spec, plan, k, seed)).datamodule
    dm.prepare_data()
    dm.setup("fit")
    return dm


def collect_predictions(plan: Plan, k: int, seed: int | None) -> RunPredictions:
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
        if (d.get("names") == names and d.get("views") == plan.all_views and "collected" in d
                and d.get("sources") == [m.source for m in members]):
            return RunPredictions.from_dict(d)
    sets: dict[tuple[str, ...], list[Collected]] = {}  # students and snapshots: the face only
    for m in members:
        if not _logits_current(run_dir / "logits" / f"{m.name}.pt", m):
            small = m.region == "face" and (m.kind == "student" or m.kind.startswith("snapshot"))
            sets.setdefault(("face",) if small else tuple(plan.data_views), []).append(m)
    for views, todo in sets.items():
        _collect_members(plan, k, run_dir, todo, list(views))
    return _assemble(plan, run_dir, members, pred_file)


def _logits_current(path: Path, member: Collected) -> bool:
    """Whether ``path`` holds ``member``'s logits from the checkpoint it has now (a retrained
    member, or a file from before sources were recorded, is collected again, said in a log line)."""
    if not path.is_file():
        return False
    saved = torch.load(path, map_location="cpu", weights_only=True).get("source")
    if saved != member.source:
        log.info("%s was collected from %s, not %s: collected again", path, saved or "an unrecorded checkpoint",
                 member.source)
        return False
    return True


def _collect_members(plan: Plan, k: int, run_dir: Path, todo: list[Collected], data_views: list[str]) -> None:
    """Each member sees its views drawn at the size it was trained on (one data module per size:
    a 48 px member is not shown faces drawn at 75 px and shrunk), unless the run names one size."""
    fp = choose(plan.collect.fast_path, plan.device.type)
    loaded = [load_member(m.checkpoint, i).set_channels_last(fp.channels_last) for i, m in enumerate(todo)]
    by_size: dict[int, list[int]] = {}
    for i, member in enumerate(loaded):
        by_size.setdefault(plan.collect.image_size or member.image_size, []).append(i)
    for size, idx in by_size.items():  # the data from the largest member's config, which takes this size
        net = EnsembleNet([loaded[i] for i in idx], views=data_views, image_size=size, flip=plan.collect.flip).to(plan.device)
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
                     member_print=json.dumps(net.members[j].data_fingerprint, sort_keys=True), source=m.source)
            save_torch(d, run_dir / "logits" / f"{m.name}.pt")
        log.info("collected %s at %d px on %s", [todo[i].name for i in idx], size, views)


def _assemble(plan: Plan, run_dir: Path, members: list[Collected], pred_file: Path) -> RunPredictions:
    parts = [torch.load(run_dir / "logits" / f"{m.name}.pt", map_location="cpu", weights_only=True) for m in members]
    views = plan.all_views
    collected = torch.zeros(len(members), len(views), dtype=torch.bool)
    splits = {}
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
        splits[split] = Split(logits, ref[f"{split}_labels"], ref[f"{split}_index"], located)
    out = RunPredictions([m.name for m in members], views, [m.region for m in members], [m.kind for m in members],
                         parts[0]["class_names"], [p["member_print"] for p in parts], parts[0]["data_print"], collected,
                         **splits)
    save_torch({**out.to_dict(), "sources": [m.source for m in members]}, pred_file)
    return out


__all__ = ["Collected", "RunPredictions", "Split", "checkpoint_source", "collect_predictions", "collected_members", "member_datamodule",
           "run_datamodule"]
