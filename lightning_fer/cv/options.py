"""The ``cv`` command's options, as typed groups: who trains (:class:`Lineup`), on which folds and
seeds (:class:`Folds`), how predictions are collected and voted on (:class:`Collect`), and the
region experts (:class:`Experts`). Each is a YAML mapping of a cv config (``lineup: {members:
[...]}``) and a group of the command line (``--folds.seeds=[0,1]``), checked as it is parsed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from lightning_fer.options import OptionError

__all__ = ["MOVED", "Collect", "Experts", "Folds", "Lineup", "Overrides", "as_layers", "check_moved"]

#: Overrides of a member's config: a YAML mapping shaped as the config (``{trainer: {max_epochs:
#: 6}}``), or a list of command-line strings (``[--trainer.max_epochs=6]``) and mappings, applied in order.
Overrides = Union[dict[str, Any], list[Union[str, dict[str, Any]]]]  # noqa: UP007 - jsonargparse reads it


def as_layers(overrides: Overrides | None) -> list:
    """``overrides`` as :func:`lightning_fer.build.build`'s override arguments, in order: each
    mapping one, each run of command-line strings one list.

    Example:
        >>> as_layers({"trainer": {"max_epochs": 6}})
        [{'trainer': {'max_epochs': 6}}]
        >>> as_layers(["--a=1", "--b=2", {"trainer": {"max_epochs": 6}}, "--c=3"])
        [['--a=1', '--b=2'], {'trainer': {'max_epochs': 6}}, ['--c=3']]
    """
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [dict(overrides)]
    out: list = []
    for o in overrides:
        if isinstance(o, dict):
            out.append(dict(o))
        elif out and isinstance(out[-1], list):
            out[-1].append(str(o))
        else:
            out.append([str(o)])
    return out

#: Where each option of the flat ``cv`` configs before the groups went.
MOVED = {**{k: f"lineup.{k}" for k in ("members", "bags", "students", "teacher_members", "member_groups", "overrides",
                                      "member_overrides", "monitor")},
         "folds": "folds.folds", "num_folds": "folds.num_folds", "seeds": "folds.seeds",
         **{k: f"collect.{k}" for k in ("views", "flip", "image_size", "batch_size", "device", "fast_path")},
         **{f"expert_{k}": f"experts.{k}" for k in ("regions", "members", "sizes", "overrides")}}


def check_moved(argv: list[str]) -> None:
    """Refuse, in one line that names the new place, a flat option of before the groups: in a
    ``--config`` file (its top-level keys) or on the command line (``--members``).

    Example:
        >>> check_moved(["--flip=true"])
        Traceback (most recent call last):
        ...
        lightning_fer.options.OptionError: cv --flip: now --collect.flip (cv options are grouped: lineup, folds, collect, experts)
    """
    from pathlib import Path

    import yaml

    said = "(cv options are grouped: lineup, folds, collect, experts)"
    for i, arg in enumerate(argv):
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if key in MOVED and key != "folds":
            raise OptionError(f"cv --{key}: now --{MOVED[key]} {said}")
        if key == "folds" and "=" in arg and arg.split("=", 1)[1].lstrip().startswith("["):
            raise OptionError(f"cv --folds=[...]: now --folds.folds=[...] {said}")
        if key == "config" and (path := arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")):
            if not Path(path).is_file():
                continue
            top = yaml.safe_load(Path(path).read_text()) or {}
            old = [k for k in top if k in MOVED and not (k == "folds" and isinstance(top[k], dict))]
            if old:
                raise OptionError(f"{path}: {', '.join(f'{k} is now {MOVED[k]}' for k in old)} {said}")


@dataclass(frozen=True)
class Lineup:
    """Who a ``cv`` run trains, and how.

    Args:
        members: FERClassifier config files, one per member (e.g. ``configs/demo/resnet50.yaml``).
        bags: bagged members, a cheap source of diversity: ``{quick_member: 2}`` also trains two
            copies of that member (by config file stem), ``quick_member.bag1`` and ``.bag2``, each
            on its own bootstrap resample of the training folds (``training.bootstrap``, seeded
            by the copy's number and the run's seed). They are whole-face members in every row.
        students: member configs trained by distillation on the run's soft targets (the mean
            probabilities of ``teacher_members`` on the training faces, and their mirrors with
            ``flip``), named ``<config>.student``.
        teacher_members: who teaches the students (their soft vote): whole-face members, their
            snapshots (``resnet18#e5``) or all of a member's snapshots (``resnet18#snapshots``);
            default every whole-face member.
        member_groups: named ensembles of some of the whole-face members (bagged copies
            included), e.g. ``{cheap: [quick_member, quick_member.bag1]}``: every strategy is also
            fitted and scored over each (rows ``SoftVote [cheap]``), on the views of the plain rows.
        overrides: applied to every member's config (:data:`Overrides`: a mapping such as
            ``{trainer: {max_epochs: 5}}``, or command-line strings).
        member_overrides: overrides for one member, by member name or config file stem
            (``{resnet50: {data: {init_args: {training: {fraction: 0.5}}}}}``), after ``overrides``.
        monitor: metric whose best value (highest) picks every member's checkpoint. ``None``: each
            member config's own ``ModelCheckpoint`` monitor and mode (the last epoch for a
            final-weights config; ``val/acc`` where the config has none).
    """

    members: list[str]
    bags: dict[str, int] = field(default_factory=dict)
    students: list[str] = field(default_factory=list)
    teacher_members: list[str] | None = None
    member_groups: dict[str, list[str]] = field(default_factory=dict)
    overrides: Overrides = field(default_factory=list)
    member_overrides: dict[str, Overrides] = field(default_factory=dict)
    monitor: str | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise OptionError("--lineup.members: list at least one member config")


@dataclass(frozen=True)
class Folds:
    """Which runs a ``cv`` call makes: a fold of ``num_folds`` held out per run, and per seed.

    Args:
        folds: which folds to run (default: all ``num_folds``).
        num_folds: number of folds (passed to every member's data module).
        seeds: train every member once per seed (``seed_everything``; the folds stay those of the
            data's own seed), to see the spread that training randomness alone gives. Default:
            one run with each config's own seed.
    """

    folds: list[int] | None = None
    num_folds: int = 5
    seeds: list[int] | None = None

    def __post_init__(self) -> None:
        if self.num_folds < 2:
            raise OptionError(f"--folds.num_folds {self.num_folds}: at least 2 (one held out, the rest to train on)")
        bad = [k for k in self.folds or [] if not 0 <= k < self.num_folds]
        if bad:
            raise OptionError(f"--folds.folds {bad}: each fold must be in 0..{self.num_folds - 1}")

    def runs(self) -> list[tuple[int, int | None]]:
        """(fold, seed) of every run."""
        folds = list(range(self.num_folds)) if self.folds is None else list(self.folds)
        return [(k, s) for k in folds for s in (self.seeds or [None])]


@dataclass(frozen=True)
class Collect:
    """How every member's predictions are collected for the ensembles, and on what.

    Args:
        views: regions the ensembles look at (``[face]``, or the paper's five regions).
        flip: horizontal-flip test-time augmentation: the mirrored face is one more view that
            every whole-face member votes on and every strategy counts (when ``face`` is among
            ``views``); each member also gets a row ``<member> + flip``.
        image_size: size of the views collected for the ensembles (default: each member's own).
        batch_size: batch size when collecting predictions.
        device: ``auto``, ``cpu`` or ``cuda``.
        fast_path: ``auto``, ``on`` or ``off``: the members' training (``--fast_path``) and the
            collection of their predictions (bf16 autocast and channels-last where chosen).
    """

    views: list[str] = field(default_factory=lambda: ["face"])
    flip: bool = False
    image_size: int | None = None
    batch_size: int = 64
    device: str = "auto"
    fast_path: str = "auto"


@dataclass(frozen=True)
class Experts:
    """Region experts, the paper's design: each config of ``members`` (default: every member of
    the lineup) is also trained once per region listed in ``regions`` (``left_eye``,
    ``right_eye``, ``nose``, ``mouth``, ``rest``), named ``<member>@<region>``, and bound to its
    region, which must be among ``collect.views``. Rows: each expert, and every strategy over the
    experts (``[experts]``) and over the face members on the face with the experts (``[faces +
    experts]``).

    Args:
        regions: the regions that get experts (none: no experts).
        members: the member configs trained as experts (default: the lineup's members).
        sizes: image size per expert region, e.g. ``{mouth: 24}`` (default: the config's).
        overrides: overrides (:data:`Overrides`) for the experts' training only, after the
            lineup's (e.g. fewer epochs: parts are small and cheap to learn).
    """

    regions: list[str] = field(default_factory=list)
    members: list[str] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    overrides: Overrides = field(default_factory=list)
