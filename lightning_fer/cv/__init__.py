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

:mod:`~lightning_fer.cv.train` trains, :mod:`~lightning_fer.cv.predictions` collects, :mod:`~lightning_fer.cv.ensembles` fits,
:mod:`~lightning_fer.cv.score` scores; :mod:`~lightning_fer.cv.report`
writes the table, the pictures and W&B.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lightning_fer.cv.distill import write_soft_targets
from lightning_fer.cv.ensembles import fit_strategies, unique_names
from lightning_fer.cv.jobs import JobOptions
from lightning_fer.cv.options import Collect, Experts, Folds, Lineup, check_moved
from lightning_fer.cv.plan import Plan, check_member_groups, member_specs
from lightning_fer.cv.predictions import collect_predictions
from lightning_fer.cv.report import (
    METRICS,
    log_to_wandb,
    plot_confusions,
    plot_table,
    scores,
    table_records,
    write_table,
)
from lightning_fer.cv.score import evaluate
from lightning_fer.cv.train import train_member
from lightning_fer.ensemble.strategies import EnsembleStrategy
from lightning_fer.files import save_torch

log = logging.getLogger(__name__)

__all__ = ["METRICS", "Collect", "Experts", "Folds", "JobOptions", "Lineup", "add_arguments", "arguments", "make_plan", "parser", "run_config", "run_cv", "run_parsed", "scores", "write_table"]


def run_cv(
    lineup: Lineup,
    output_dir: str = "runs/cv",
    members_dir: str | None = None,
    folds: Folds = Folds(),  # noqa: B008 - frozen option groups
    collect: Collect = Collect(),  # noqa: B008
    experts: Experts = Experts(),  # noqa: B008
    strategies: list[EnsembleStrategy] | None = None,
    wandb_project: str | None = None,
) -> dict:
    """Train, collect, fit and evaluate; returns the per-run figures, the table's path and the pictures.

    Args:
        lineup: who trains, and how (:class:`~lightning_fer.cv.options.Lineup`: members, bags,
            students and their teachers, named groups, overrides).
        output_dir: where predictions, the table and the pictures go.
        members_dir: where members are trained and looked for (default ``output_dir``), so that
            several ensembles (face, regions) can share the members of one run.
        folds: which folds and seeds are run (:class:`~lightning_fer.cv.options.Folds`).
        collect: the views the ensembles look at, flip, and how predictions are collected
            (:class:`~lightning_fer.cv.options.Collect`).
        experts: region experts (:class:`~lightning_fer.cv.options.Experts`; default none).
        strategies: ensemble strategies (``class_path`` in YAML); default hard vote, soft vote
            and stacking.
        wandb_project: also log Table II (a W&B table) and the confusion matrices (images) to
            this W&B project (offline without credentials or with ``WANDB_MODE=offline``).

    A member whose config trains with ``scheduler: cosine_restarts`` and ``cycles`` > 1 keeps a
    checkpoint at the end of every cycle: its snapshots are members too (``<member>#e<epoch>``),
    and every strategy is scored over them (``[snapshots <member>]``).
    """
    from lightning_fer.ensemble.strategies import HardVote, SoftVote, Stacking

    t_start = time.perf_counter()
    plan = make_plan(lineup, output_dir, members_dir, folds, collect, experts)
    specs, out, held_out = plan.members, plan.out, sorted({k for k, _ in plan.runs})
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
    collected = {plan.run_name(k, sd): collect_predictions(plan, k, sd) for k, sd in plan.runs}  # 2. predictions
    first = collected[plan.run_name(*plan.runs[0])]
    class_names = first.class_names
    fitted = fit_strategies(plan, collected, strategies, len(class_names))  # 3. out-of-fold fitting
    kept: dict = {}
    rows, confusion, what = evaluate(plan, collected, fitted, unique_names(strategies), len(class_names), kept)  # 4. scores
    # Every row's test probabilities, face by face (paired comparisons: benchmarks/fer2013_zoo.py).
    save_torch({"labels": {r: d.test.labels for r, d in collected.items()}, "class_names": list(class_names),
                "rows": kept, "what": what}, out / "test_probs.pt")

    runs = f"{len(held_out)} fold(s) {held_out} of {folds.num_folds}" + (f" x seeds {list(folds.seeds)}" if folds.seeds else "")
    table = write_table(rows, out, f"{runs}; views {list(collect.views)}; {len(first.test.labels)} test images", what)
    records = table_records(rows, what)  # the structured rows (table2_runs.csv, unrounded): the picture and W&B
    pictures = [plot_table(records, out), *plot_confusions(confusion, class_names, out)]
    if wandb_project:
        log_to_wandb(wandb_project, out, records, pictures, dict(members=list(lineup.members), folds=held_out,
                                                                 seeds=folds.seeds, views=list(collect.views)))
    log.info("cv finished in %.0f s: %s", time.perf_counter() - t_start, out / "table2.md")
    print(table)
    return {"rows": rows, "what": what, "records": records, "table": out / "table2.md", "pictures": pictures}


def make_plan(lineup: Lineup, output_dir: str = "runs/cv", members_dir: str | None = None, folds: Folds = Folds(),  # noqa: B008
              collect: Collect = Collect(), experts: Experts = Experts(), **_ignored) -> Plan:  # noqa: B008
    """What a ``cv`` call with these arguments (:func:`run_cv`'s) trains and where, checked
    before anything trains."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(member_specs(lineup, experts), out, Path(members_dir) if members_dir else out, lineup, folds, collect,
                experts)
    check_member_groups(plan)
    missing = [r for r in experts.regions if r not in plan.collect.views]
    if missing:
        raise ValueError(f"expert regions {missing} are not among views {list(plan.collect.views)}: add them to "
                         "collect.views")
    return plan


def add_arguments(parser) -> None:
    """``cv``'s options on ``parser``: every argument of :func:`run_cv`, and the job options of
    :class:`~lightning_fer.cv.jobs.JobOptions` (the command line's ``cv`` subcommand is this)."""
    from typing import Literal

    parser.add_function_arguments(run_cv, fail_untyped=False)
    parser.add_argument("--list_jobs", "--list-jobs", action="store_true",
                        help="list the trainings, one line each with the command that runs it, and stop")
    parser.add_argument("--job", type=int | None, default=None, help="run one training (an ID of --list-jobs); resumable")
    parser.add_argument("--launcher", type=Literal["local", "slurm"] | None, default=None,
                        help="submit the unfinished trainings through submitit, wait, then gather and score")
    parser.add_argument("--max_parallel", type=int | None, default=None,
                        help="with --launcher: at most this many trainings at a time (default 2)")


def parser():
    """A parser of ``cv``'s options alone: ``--config FILE`` and :func:`add_arguments`'s."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="python -m lightning_fer cv", description=__doc__, parser_mode="omegaconf")
    p.add_argument("--config", action=ActionConfigFile)
    add_arguments(p)
    return p


def _split(p, cfg) -> tuple[dict, JobOptions, str]:
    """:func:`run_cv`'s arguments from a parse of ``p`` (classes given by ``class_path``
    instantiated), the job options, and the run's options as YAML (what a job reads)."""
    opts = JobOptions(**{k: cfg.pop(k) for k in JobOptions.__dataclass_fields__})
    cfg.pop("config", None)
    text = p.dump(cfg)
    init = p.instantiate_classes(cfg)
    return {k: v for k, v in init.items()}, opts, text


def arguments(argv: list[str]) -> dict:
    """:func:`run_cv`'s arguments from ``argv`` (``--config FILE`` and/or ``--key=value``),
    checked and instantiated (strategies given by ``class_path`` are built)."""
    check_moved(argv)
    p = parser()
    return _split(p, p.parse_args(argv))[0]


def run_config(config: str | Path, **changes) -> dict:
    """Run the experiment a ``cv`` YAML file describes, with ``changes`` to :func:`run_cv`'s
    arguments (e.g. ``output_dir=...``, ``overrides=[...]``)."""
    return run_cv(**{**arguments(["--config", str(config)]), **changes})


def run_parsed(p, cfg):
    """Run a parse of ``p`` (a parser :func:`add_arguments` filled): all of :func:`run_cv`; or,
    with a job option, list the trainings (``--list-jobs``), run one (``--job ID``), or submit them
    all (``--launcher local|slurm``) and then gather and score. Jobs read the run's options from
    ``cv_config.yaml`` in its output folder."""
    from lightning_fer.cv import jobs
    from lightning_fer.files import write_text

    args, opts, text = _split(p, cfg)
    if not opts.any:
        return run_cv(**args)
    plan = make_plan(**args)
    every = jobs.jobs_of(plan)
    if opts.job is not None:
        return jobs.run_one(plan, jobs.pick(every, opts.job))
    config = write_text(plan.out / "cv_config.yaml", text)
    if opts.list_jobs:
        listed = jobs.listing(every, config)
        print(listed)
        return listed
    jobs.launch(plan, every, config, opts.launcher, opts.max_parallel or 2)
    return run_cv(**args)  # gather: every member is trained now; collect, fit and score
