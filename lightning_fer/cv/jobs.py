"""``cv`` as independent jobs: every training (member x fold x seed, region experts included) is a
job that can run anywhere the run folder is shared, and ``cv`` without a job option gathers what
finished and scores it.

    python -m lightning_fer cv --config configs/demo/cv_quick.yaml --list-jobs
    python -m lightning_fer cv --config configs/demo/cv_quick.yaml --job 2          # one training, resumable
    python -m lightning_fer cv --config configs/demo/cv_quick.yaml --launcher local --max_parallel 2
    python -m lightning_fer cv --config configs/demo/cv_quick.yaml --launcher slurm  # a SLURM job array
    python -m lightning_fer cv --config configs/demo/cv_quick.yaml                  # gather and score

A launcher (submitit: ``pip install 'lightning-fer[cluster]'``) submits the unfinished jobs, at
most ``--max_parallel`` at a time, waits for them, then gathers and scores in the calling
process. On SLURM they go as one job array (``slurm_array_parallelism``); ``--trainer.*``
overrides (devices, nodes, strategy) apply inside each job as in any ``fit``. Distilled students
need every teacher first: they are trained by the gathering call.
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lightning_fer.cv.plan import MemberSpec, Plan
from lightning_fer.cv.train import train_member

log = logging.getLogger(__name__)

__all__ = ["Job", "JobError", "JobOptions", "jobs_of", "launch", "listing", "pick", "run_one"]


class JobError(ValueError):
    """A bad job option: an unknown job ID (the valid ones are listed), a launcher option without a
    launcher."""


@dataclass(frozen=True)
class JobOptions:
    """``cv``'s job options (``--list-jobs``, ``--job``, ``--launcher``, ``--max_parallel``)."""

    list_jobs: bool = False
    job: int | None = None
    launcher: Literal["local", "slurm"] | None = None
    max_parallel: int | None = None

    def __post_init__(self):
        if self.max_parallel is not None and not self.launcher:
            raise JobError("cv: --max_parallel goes with --launcher local|slurm")

    @property
    def any(self) -> bool:
        return self.list_jobs or self.job is not None or self.launcher is not None


@dataclass(frozen=True)
class Job:
    id: int
    spec: MemberSpec
    fold: int
    seed: int | None

    def describe(self) -> str:
        return (f"member {self.spec.name}, fold {self.fold}, seed {'-' if self.seed is None else self.seed}, "
                f"region {self.spec.region}")


def jobs_of(plan: Plan) -> list[Job]:
    """Every training of the plan, numbered: run by run (fold, seed), member by member (students
    excluded: the gathering call trains them after their teachers)."""
    out = []
    for k, sd in plan.runs:
        for spec in plan.members:
            if not spec.student:
                out.append(Job(len(out), spec, k, sd))
    return out


def done(plan: Plan, job: Job) -> bool:
    return (plan.member_dir(job.fold, job.seed, job.spec.name) / "done.json").is_file()


def command(config: Path, job: Job) -> str:
    return f"python -m lightning_fer cv --config {shlex.quote(str(config))} --job {job.id}"


def listing(jobs: list[Job], config: Path) -> str:
    """One line per training: its ID, member, fold, seed and region, and the command that runs it
    (over ``config``: the run's options as parsed, written in its output folder)."""
    return "\n".join(f"{j.id}\t{j.describe()}\t{command(config, j)}" for j in jobs)


def pick(jobs: list[Job], job_id) -> Job:
    """The job of ``job_id``; a bad one is refused with the valid ones listed."""
    try:
        i = int(job_id)
    except (TypeError, ValueError):
        i = -1
    if not 0 <= i < len(jobs):
        valid = "; ".join(f"{j.id}: {j.spec.name} fold {j.fold} seed {j.seed}" for j in jobs)
        raise JobError(f"cv --job {job_id}: no such job; the valid IDs are 0..{len(jobs) - 1} ({valid})")
    return jobs[i]


def run_one(plan: Plan, job: Job) -> Path:
    """Train one job's member (resumable as every ``cv`` member); returns its ``done.json``."""
    log.info("cv job %d: %s", job.id, job.describe())
    return train_member(plan, job.spec, job.fold, job.seed)


def launch(plan: Plan, jobs: list[Job], config: Path, launcher: str, max_parallel: int = 2,
           timeout_min: int = 24 * 60) -> list[str]:
    """Submit the unfinished jobs through submitit and wait for them: ``local`` runs at most
    ``max_parallel`` at a time as subprocesses of this machine; ``slurm`` submits one job array
    capped at ``max_parallel`` running. A failed job stops the launch with its log named."""
    try:
        import submitit
    except ImportError:
        raise ImportError("cv --launcher needs submitit: pip install 'lightning-fer[cluster]'") from None
    folder = plan.out / "jobs"  # submitit's pickles and each job's log
    todo = [j for j in jobs if not done(plan, j)]
    log.info("cv: %d of %d jobs to run (%s launcher, at most %d at a time)", len(todo), len(jobs), launcher,
             max_parallel)
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=launcher)
    executor.update_parameters(timeout_min=timeout_min, name="lightning_fer-cv", slurm_array_parallelism=max_parallel)
    results: list[str] = []
    waves = [todo] if launcher == "slurm" else [todo[i:i + max_parallel] for i in range(0, len(todo), max_parallel)]
    for wave in waves:
        with executor.batch():  # one job array per wave: each job is `cv --config CONFIG --job ID` in its own process
            submitted = [executor.submit(submitit.helpers.CommandFunction(
                [sys.executable, "-m", "lightning_fer", "cv", "--config", str(config), f"--job={j.id}"])) for j in wave]
        for job, sub in zip(wave, submitted):
            try:
                results.append(sub.result())
            except Exception as err:  # submitit's FailedJobError / UncompletedJobError carry the log's end
                raise RuntimeError(f"cv job {job.id} ({job.describe()}) failed; its log: {folder / str(sub.job_id)} "
                                   f"({type(err).__name__}: {str(err).strip().splitlines()[-1][:200]})") from None
    return results
