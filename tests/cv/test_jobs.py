"""``cv`` as jobs: listed, run one by one or by the local launcher two at a time, then gathered
into the same Table II as one process gives."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lightning_fer.cli import main as cli_main
from lightning_fer.cv.report import read_records
from tests.conftest import REPO, tiny_args

SPP = str(REPO / "configs" / "demo" / "sppnet.yaml")


def _argv(tmp_path, out: str) -> list[str]:
    return ["--lineup.members", json.dumps([SPP]), "--lineup.bags", '{"sppnet": 1}', "--output_dir", str(tmp_path / out),
            "--folds.folds", "[0]", "--folds.num_folds", "3", "--strategies",
            json.dumps([{"class_path": "lightning_fer.ensemble.SoftVote"}]),
            "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8), "--trainer.max_epochs=1",
                                       "--trainer.limit_train_batches=2"])]


def main(argv: list[str]):
    return cli_main(["cv", *argv])


def test_list_run_one_and_refuse_a_bad_job(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = _argv(tmp_path, "cv")
    text = main([*argv, "--list-jobs"])
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("0\tmember sppnet, fold 0, seed -, region face\t")
    assert lines[1].startswith("1\tmember sppnet.bag1,") and lines[1].endswith("--job 1")
    assert f"--config {tmp_path / 'cv' / 'cv_config.yaml'} --job 1" in lines[1]  # the run's options, as parsed
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


@pytest.mark.parametrize(("option", "said"), [
    (["--launcher", "pbs"], "--launcher: 'pbs' is not accepted (expected Literal['local', 'slurm'], null)"),
    (["--max_parallel", "2"], "cv: --max_parallel goes with --launcher local|slurm"),
    (["--job"], "--job: expected one argument"),
])
def test_bad_job_options_are_named_in_one_line(tmp_path, option, said):
    proc = subprocess.run([sys.executable, "-m", "lightning_fer", "cv", *_argv(tmp_path, "cv"), *option],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and said in errors[0], proc.stderr[-1500:]
