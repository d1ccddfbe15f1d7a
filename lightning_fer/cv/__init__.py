"""Cross-validated training and evaluation in one command: ``python -m lightning_fer cv``.

For every fold: train each member config (a FERClassifier config) on the other folds, then
collect every member's predictions on every view for the held-out fold (out of fold) and for
the test split. Learning strategies are fitted on the pooled out-of-fold predictions (each
fold's members checked against the fold they were held out from); every member and every
strategy is evaluated on the test split per fold; the paper's Table II (accuracy, balanced
accuracy, macro precision / recall / F1, mean and standard deviation over folds) is written as
Markdown and CSV, with confusion-matrix PNGs. A run that is interrupted resumes: finished
members and collected predictions are kept, an unfinished member is trained again.

    python -m lightning_fer cv --config configs/demo/cv.yaml

:mod:`~lightning_fer.cv.run` trains, collects, fits and scores; :mod:`~lightning_fer.cv.report`
writes the table, the pictures and W&B.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from lightning_fer.cv.distill import write_soft_targets
from lightning_fer.cv.plan import Plan, check_member_groups, member_specs, train_member
from lightning_fer.cv.report import (
    METRICS,
    log_to_wandb,
    plot_confusions,
    plot_table,
    scores,
    table_records,
    write_table,
)
from lightning_fer.cv.run import collect, fit_strategies, unique_names
from lightning_fer.cv.score import evaluate
from lightning_fer.ensemble.strategies import EnsembleStrategy
from lightning_fer.files import save_torch

log = logging.getLogger(__name__)

__all__ = ["METRICS", "arguments", "main", "make_plan", "parser", "run_config", "run_cv", "scores", "write_table"]


def run_cv(
    members: list[str],
    output_dir: str = "runs/cv",
    members_dir: str | None = None,
    folds: list[int] | None = None,
    num_folds: int = 5,
    seeds: list[int] | None = None,
    views: list[str] = ["face"],  # noqa: B006
    strategies: list[EnsembleStrategy] | None = None,
    overrides: list[str] = [],  # noqa: B006
    monitor: str | None = None,
    image_size: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    wandb_project: str | None = None,
    fast_path: str = "auto",
    expert_regions: list[str] = [],  # noqa: B006
    expert_members: list[str] | None = None,
    expert_sizes: dict[str, int] = {},  # noqa: B006
    expert_overrides: list[str] = [],  # noqa: B006
    flip: bool = False,
    students: list[str] = [],  # noqa: B006
    teacher_members: list[str] | None = None,
    member_overrides: dict[str, list[str]] = {},  # noqa: B006
    bags: dict[str, int] = {},  # noqa: B006
    member_groups: dict[str, list[str]] = {},  # noqa: B006
) -> dict:
    """Train, collect, fit and evaluate; returns the per-run figures, the table's path and the pictures.

    Args:
        members: FERClassifier config files, one per member (e.g. ``configs/demo/resnet50.yaml``).
        output_dir: where predictions, the table and the pictures go.
        members_dir: where members are trained and looked for (default ``output_dir``), so that
            several ensembles (face, regions) can share the members of one run.
        folds: which folds to run (default: all ``num_folds``).
        num_folds: number of folds (passed to every member's data module).
        seeds: train every member once per seed (``seed_everything``; the folds stay those
            of the data's own seed), to see the spread that training randomness alone gives.
            Default: one run with each config's own seed.
        views: regions the ensembles look at (``[face]``, or the paper's five regions).
        strategies: ensemble strategies (``class_path`` in YAML); default hard vote, soft vote
            and stacking.
        overrides: command-line overrides applied to every member's fit, e.g.
            ``--trainer.max_epochs=5``.
        monitor: metric whose best value (highest) picks every member's checkpoint. ``None``: each
            member config's own ``ModelCheckpoint`` monitor and mode (``val/balanced_acc`` for the
            AffectNet members; the last epoch for a final-weights config; ``val/acc`` where the
            config has none). Each member's log says which it used, and its ``done.json`` keeps it.
        image_size: size of the views collected for the ensembles (default: the largest member
            size; each member gets its own size back by resizing).
        batch_size: batch size when collecting predictions.
        device: ``auto``, ``cpu`` or ``cuda``.
        wandb_project: also log Table II (a W&B table) and the confusion matrices (images) to
            this W&B project (offline without credentials or with ``WANDB_MODE=offline``).
        fast_path: ``auto``, ``on`` or ``off``: the members' training (``--fast_path``) and the
            collection of their predictions (bf16 autocast and channels-last where chosen).
        expert_regions: region experts, the paper's design: each config of ``expert_members``
            (default: every member) is also trained once per region listed here (``left_eye``,
            ``right_eye``, ``nose``, ``mouth``, ``rest``), named ``<member>@<region>``, and bound
            to its region. Their regions must be among ``views``. Rows: each expert, and every
            strategy over the experts (``[experts]``) and over the face members on the face
            with the experts (``[faces + experts]``).
        expert_members: the member configs trained as experts (default: ``members``).
        expert_sizes: image size per expert region, e.g. ``{mouth: 24}`` (default: the config's).
        expert_overrides: command-line overrides for the experts' training only, after
            ``overrides`` (e.g. fewer epochs: parts are small and cheap to learn).
        flip: horizontal-flip test-time augmentation: the mirrored face is one more view that
            every whole-face member votes on and every strategy counts (when ``face`` is among
            ``views``); each member also gets a row ``<member> + flip``.
        students: member configs trained by distillation on the run's soft targets (the mean
            probabilities of ``teacher_members`` on the training faces, and their mirrors with ``flip``),
            named ``<config>.student``.
        member_overrides: command-line overrides for one member, by member name or config file stem
            (``{resnet50: [--data.init_args.training.fraction=0.5]}``), after ``overrides``: a
            benchmark profile's budget, kept out of the member's own config.
        teacher_members: who teaches the students (their soft vote): whole-face members, their
            snapshots (``resnet18#e5``) or all of a member's snapshots (``resnet18#snapshots``);
            default every whole-face member.
        bags: bagged members, a cheap source of diversity: ``{quick_member: 2}`` also trains two
            copies of that member (by config file stem), ``quick_member.bag1`` and ``.bag2``, each
            on its own bootstrap resample of the training folds (``training.bootstrap``, seeded
            by the copy's number and the run's seed). They are whole-face members in every row.
        member_groups: named ensembles of some of the whole-face members (bagged copies
            included), e.g. ``{cheap: [quick_member, quick_member.bag1], paper: [sppnet_small,
            resnet50_small, inception_v3_small]}``: every strategy is also fitted and scored over
            each (rows ``SoftVote [cheap]``), on the views of the plain rows. Each row's ``voters``
            column in ``table2.csv`` lists who voted.

    A member whose config trains with ``scheduler: cosine_restarts`` and ``cycles`` > 1 keeps a
    checkpoint at the end of every cycle: its snapshots are members too (``<member>#e<epoch>``),
    and every strategy is scored over them (``[snapshots <member>]``).
    """
    from lightning_fer.ensemble.strategies import HardVote, SoftVote, Stacking

    t_start = time.perf_counter()
    plan = make_plan(members, output_dir, members_dir, folds, num_folds, seeds, views, overrides, monitor, image_size,
                     batch_size, device, fast_path, expert_regions, expert_members, expert_sizes, expert_overrides, flip,
                     students, teacher_members, member_overrides, bags, member_groups)
    specs, out, folds = plan.members, plan.out, sorted({k for k, _ in plan.runs})
    strategies = list(strategies) if strategies else [HardVote(), SoftVote(), Stacking()]

    for k, sd in plan.runs:  # 1. train (what a previous call finished is kept; a half-trained member resumes)
        for spec in specs:
            if not spec.student:
                train_member(plan, spec, k, sd)
    for k, sd in plan.runs if any(s.student for s in specs) else []:  # 1b. distillation
        write_soft_targets(plan, k, sd)
        for spec in specs:
            if spec.student:
                train_member(plan, spec, k, sd)
    collected = {plan.run_name(k, sd): collect(plan, k, sd) for k, sd in plan.runs}  # 2. predictions
    first = collected[plan.run_name(*plan.runs[0])]
    class_names = first["class_names"]
    fitted = fit_strategies(plan, collected, strategies, len(class_names))  # 3. out-of-fold fitting
    kept: dict = {}
    rows, confusion, what = evaluate(plan, collected, fitted, unique_names(strategies), len(class_names), kept)  # 4. scores
    # Every row's test probabilities, face by face (paired comparisons: benchmarks/fer2013_zoo.py).
    save_torch({"labels": {r: d["test_labels"] for r, d in collected.items()}, "class_names": list(class_names),
                "rows": kept, "what": what}, out / "test_probs.pt")

    runs = f"{len(folds)} fold(s) {folds} of {num_folds}" + (f" x seeds {list(seeds)}" if seeds else "")
    table = write_table(rows, out, f"{runs}; views {list(views)}; {len(first['test_labels'])} test images", what)
    records = table_records(rows, what)  # the structured rows (table2_runs.csv, unrounded): the picture and W&B
    pictures = [plot_table(records, out), *plot_confusions(confusion, class_names, out)]
    if wandb_project:
        log_to_wandb(wandb_project, out, records, pictures, dict(members=members, folds=folds, seeds=seeds, views=list(views)))
    log.info("cv finished in %.0f s: %s", time.perf_counter() - t_start, out / "table2.md")
    print(table)
    return {"rows": rows, "what": what, "records": records, "table": out / "table2.md", "pictures": pictures}


def make_plan(members, output_dir="runs/cv", members_dir=None, folds=None, num_folds=5, seeds=None, views=("face",),
              overrides=(), monitor=None, image_size=None, batch_size=64, device="auto", fast_path="auto",
              expert_regions=(), expert_members=None, expert_sizes=None, expert_overrides=(), flip=False, students=(),
              teacher_members=None, member_overrides=None, bags=None, member_groups=None, **_ignored) -> Plan:
    """What a ``cv`` call with these arguments (:func:`run_cv`'s) trains and where, checked
    before anything trains."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    folds = list(range(num_folds)) if folds is None else list(folds)
    auto = device == "auto"
    specs = member_specs(members, expert_regions, expert_members, expert_sizes or {}, students, bags or {})
    plan = Plan(specs, out, Path(members_dir) if members_dir else out,
                [(k, s) for k in folds for s in (seeds or [None])], num_folds, list(views), list(overrides), monitor,
                batch_size, image_size, torch.device(("cuda" if torch.cuda.is_available() else "cpu") if auto else device),
                fast_path, flip, teacher_members, list(expert_overrides), dict(member_overrides or {}),
                {str(k): list(v) for k, v in (member_groups or {}).items()})
    check_member_groups(plan)
    missing = [r for r in expert_regions if r not in plan.views]
    if missing:
        raise ValueError(f"expert regions {missing} are not among views {plan.views}: add them to views")
    return plan


def parser():
    """The ``cv`` subcommand's parser: ``--config FILE`` and every argument of :func:`run_cv`."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="python -m lightning_fer cv", description=__doc__, parser_mode="omegaconf")
    p.add_argument("--config", action=ActionConfigFile)
    p.add_function_arguments(run_cv, fail_untyped=False)
    return p


def arguments(argv: list[str]) -> dict:
    """:func:`run_cv`'s arguments from ``argv`` (``--config FILE`` and/or ``--key=value``),
    checked and instantiated (strategies given by ``class_path`` are built)."""
    p = parser()
    cfg = p.parse_args(argv)
    init = p.instantiate(cfg) if hasattr(p, "instantiate") else p.instantiate_classes(cfg)
    return {k: v for k, v in init.items() if k != "config"}


def run_config(config: str | Path, **changes) -> dict:
    """Run the experiment a ``cv`` YAML file describes, with ``changes`` to :func:`run_cv`'s
    arguments (e.g. ``output_dir=...``, ``overrides=[...]``)."""
    return run_cv(**{**arguments(["--config", str(config)]), **changes})


def main(argv: list[str]):
    """Parse ``argv`` (``--config FILE`` and/or ``--key=value``) and run; or, with the job
    options of :mod:`lightning_fer.cv.jobs`, list the trainings (``--list-jobs``), run one
    (``--job ID``), or submit them all (``--launcher local|slurm``) and then gather and score."""
    from lightning_fer.cv import jobs

    opts, rest = jobs.split_options(argv)
    if not opts:
        return run_cv(**arguments(rest))
    args = arguments(rest)
    plan = make_plan(**args)
    every = jobs.jobs_of(plan)
    if opts.get("list_jobs"):
        text = jobs.listing(every, rest)
        print(text)
        return text
    if opts.get("job") is not None:
        return jobs.run_one(plan, jobs.pick(every, opts["job"]))
    jobs.launch(plan, every, rest, opts["launcher"], int(opts.get("max_parallel") or 2))
    return run_cv(**args)  # gather: every member is trained now; collect, fit and score
