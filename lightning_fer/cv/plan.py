"""What one ``cv`` call trains: the members (whole-face members, region experts, distilled
students), the runs (fold, seed) and where each goes, checked before anything trains."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_fer.cv.options import Collect, Experts, Folds, Lineup
from lightning_fer.data.regions import FLIP_VIEW, REGIONS

log = logging.getLogger(__name__)

__all__ = ["BUILT_IN_GROUPS", "FLIP_VIEW", "MemberSpec", "Plan", "check_member_groups", "member_specs"]


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


def member_specs(lineup: Lineup, experts: Experts = Experts()) -> list[MemberSpec]:  # noqa: B008
    """Whole-face members, then the bagged members (``lineup.bags``: how many bootstrap-resampled
    copies of a member, by its config file stem), then each expert config once per region, then
    the students."""
    sizes = dict(experts.sizes)
    bad = [r for r in [*experts.regions, *sizes] if r not in REGIONS or r == "face"]
    if bad:
        raise ValueError(f"expert regions must be among {[r for r in REGIONS if r != 'face']}, got {bad}")
    specs = [MemberSpec(str(m), Path(m).stem) for m in lineup.members]
    by_stem = {s.name: s.config for s in specs}
    for stem, n in lineup.bags.items():
        if stem not in by_stem:
            raise ValueError(f"bags: {stem!r} is not a member; bag one of {sorted(by_stem)} (a member config's file stem)")
        if isinstance(n, bool) or int(n) < 1:
            raise ValueError(f"bags: {stem}: the number of bagged copies must be an integer >= 1, got {n!r}")
        specs += [MemberSpec(by_stem[stem], f"{stem}.bag{i}", bag=i) for i in range(1, int(n) + 1)]
    for cfg in (lineup.members if experts.members is None else experts.members):
        specs += [MemberSpec(str(cfg), f"{Path(cfg).stem}@{r}", r, sizes.get(r)) for r in experts.regions]
    specs += [MemberSpec(str(s), f"{Path(s).stem}.student", student=True) for s in lineup.students]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"member configs must have distinct file names, got {names}")
    return specs


@dataclass(frozen=True)
class Plan:
    """What one ``cv`` call runs: its members, where things go, and the option groups it was given
    (:mod:`lightning_fer.cv.options`)."""

    members: list[MemberSpec]
    out: Path
    members_dir: Path
    lineup: Lineup
    folds: Folds = Folds()
    collect: Collect = Collect()
    experts: Experts = Experts()

    @property
    def runs(self) -> list[tuple[int, int | None]]:
        return self.folds.runs()

    @property
    def device(self) -> torch.device:
        auto = self.collect.device == "auto"
        return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if auto else self.collect.device)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def all_views(self) -> list[str]:
        """The collected views: the ensembles' views, with the face first where it is not among
        them, and the mirrored face last with ``flip``."""
        views = list(self.collect.views) if "face" in self.collect.views else ["face", *self.collect.views]
        return views + [FLIP_VIEW] if self.collect.flip else views

    @property
    def data_views(self) -> list[str]:
        """The views the data module yields (the mirrored face is made from the face)."""
        return [v for v in self.all_views if v != FLIP_VIEW]

    @staticmethod
    def run_name(k: int, seed: int | None) -> str:
        return f"fold{k}" if seed is None else f"fold{k}-seed{seed}"

    def folds_override(self, k: int) -> dict:
        return {"data": {"init_args": {"folds": {"fold": k, "num_folds": self.folds.num_folds}}}}

    def member_dir(self, k: int, seed: int | None, name: str) -> Path:
        return self.members_dir / self.run_name(k, seed) / name

    def soft_targets(self, k: int, seed: int | None) -> Path:
        return self.out / self.run_name(k, seed) / "soft_targets.pt"


#: the labels of the groups ``cv`` makes itself (see :func:`lightning_fer.cv.ensembles.groups`)
BUILT_IN_GROUPS = ("faces", "regions", "experts", "faces + experts")


def check_member_groups(plan: Plan) -> None:
    """Refuse, before anything trains, a ``member_groups`` entry that names no whole-face member,
    is empty, or takes a label ``cv`` uses itself."""
    faces = [m.name for m in plan.members if not m.expert and not m.student]
    for label, names in plan.lineup.member_groups.items():
        if not label or label in BUILT_IN_GROUPS or label.startswith("snapshots "):
            raise ValueError(f"member_groups: {label!r} is a label cv uses itself ({list(BUILT_IN_GROUPS)}); "
                             "name the group otherwise")
        unknown = [n for n in names if n not in faces]
        if not names or unknown:
            raise ValueError(f"member_groups: {label}: {unknown or 'no members'}: list whole-face members "
                             f"among {faces}")
