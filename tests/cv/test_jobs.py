"""``cv`` as jobs: listed, run one by one or by the local launcher two at a time, then gathered
into the same Table II as one process gives."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lightning_fer.cv import main
from lightning_fer.cv.report import read_records
from tests.conftest import REPO, tiny_args

SPP = str(REPO / "configs" / "demo" / "sppnet.yaml")


def _argv(tmp_path, out: str) -> list[str]:
    return ["--lineup.members", json.dumps([SPP]), "--lineup.bags", '{"sppnet": 1}', "--output_dir", str(tmp_path / out),
            "--folds.folds", "[0]", "--folds.num_folds", "3", "--strategies",
            json.dumps([{"class_path": "lightning_fer.ensemble.SoftVote"}]),
            "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8), "--trainer.max_epochs=1",
                                       "--trainer.limit_train_batches=2"])]


def test_list_run_one_and_refuse_a_bad_job(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = _argv(tmp_path, "cv")
    text = main([*argv, "--list-jobs"])
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("0\tmember sppnet, fold 0, seed -, region face\t")
    assert lines[1].startswith("1\tmember sppnet.bag1,") and lines[1].endswith("--job 1")
    done = main([*argv, "--job", "1"])
    assert done.name == "done.json" and done.parent.name == "sppnet.bag1"
    assert not (tmp_path / "cv" / "fold0" / "sppnet" / "done.json").exists()  # one job, one training
    from lightning_fer.cv.jobs import JobError

    with pytest.raises(JobError, match=r"cv --job 7: no such job; the valid IDs are 0..1 \(0: sppnet fold 0"):
        main([*argv, "--job", "7"])
    proc = subprocess.run([sys.executable, "-m", "lightning_fer", "cv", *argv, "--job", "7"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr


def test_local_launcher_runs_two_jobs_at_once_then_gathers_the_same_table(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.chdir(tmp_path)
    jobs = main([*_argv(tmp_path, "jobs"), "--launcher", "local", "--max_parallel", "2"])
    one = main(_argv(tmp_path, "one"))
    logs = list((tmp_path / "jobs" / "jobs").rglob("*_log.out"))
    assert len(logs) >= 2  # each training ran as its own submitit job
    a, b = read_records(tmp_path / "jobs"), read_records(tmp_path / "one")
    assert [r["model"] for r in a] == [r["model"] for r in b] == [r["model"] for r in jobs["records"]]
    for x, y in zip(a, b):
        assert x["acc"] == pytest.approx(y["acc"]) and x["nll"] == pytest.approx(y["nll"], rel=1e-3), x["model"]
    assert one["records"]


def test_bad_job_options_are_named():
    from lightning_fer.cv.jobs import JobError, split_options

    with pytest.raises(JobError, match=r"--launcher must be one of \('local', 'slurm'\), got 'pbs'"):
        split_options(["--launcher", "pbs"])
    with pytest.raises(JobError, match="--max_parallel goes with --launcher"):
        split_options(["--max_parallel", "2"])
    with pytest.raises(JobError, match="--job needs a value"):
        split_options(["--job"])
