"""Every sweep file: valid for W&B's sweep engine (the `sweeps` package, run locally), and every
configuration it draws is accepted by the real CLI parser; one drawn configuration really fits."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml
from helpers import REPO, parse_only, tiny_args

from lightning_fer.cli import main

sweeps = pytest.importorskip("sweeps", reason="install W&B's sweep engine: pip install --no-deps sweeps==0.3.0")
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


def draw(config: dict, n: int) -> list[dict]:
    """n configurations as a W&B agent would get them (grid: all, random/bayes: n)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs: list = []
        if config["method"] == "grid":
            runs = [r for r in sweeps.next_runs(config, [], validate=True, n=n) if r is not None]
        else:
            for i in range(n):
                r = sweeps.next_run(config, runs, validate=True)
                r.state = sweeps.RunState.finished
                r.summary_metrics = {config["metric"]["name"]: 0.1 * (i % 3)}
                runs.append(r)
    return [{k: v["value"] for k, v in r.config.items()} for r in runs]


def command_args(config: dict, params: dict) -> list[str]:
    """The agent's command after `python -m lightning_fer`, with ${args} as `--key=value`."""
    cmd = config["command"]
    assert cmd[:4] == ["${env}", "python", "-m", "lightning_fer"], cmd
    out = []
    for part in cmd[4:]:
        if part == "${args}":
            out += [f"--{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in params.items()]
        else:
            out.append(part)
    return out


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_configurations_are_accepted_by_the_cli(path, monkeypatch):
    monkeypatch.chdir(REPO)  # the sweep commands name configs relative to the repository
    config = yaml.safe_load(path.read_text())
    assert not sweeps.schema_violations_from_proposed_config(config)
    drawn = draw(config, 6)
    assert drawn
    for params in drawn:
        args = command_args(config, params)
        cli = parse_only(args[1:])  # drop the subcommand: parse its options
        for key, value in params.items():
            section, *rest = key.split(".")
            node = cli.config[section]
            node = node.init_args if "init_args" in node and rest[0] != "init_args" else node
            for part in rest:
                node = node[part]
            assert node == value or (isinstance(value, list) and list(node) == value), (key, node, value)


def test_one_drawn_configuration_really_fits(tmp_path, monkeypatch):
    config = yaml.safe_load((REPO / "configs/sweeps/demo_bayes.yaml").read_text())
    params = draw(config, 1)[0]
    args = command_args(config, params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    args = [a.replace("configs/", f"{REPO}/configs/") if a.startswith("configs/") else a for a in args]
    cli = main([*args, *tiny_args(tmp_path / "synthetic"), "--trainer.max_epochs=1",
                "--trainer.limit_train_batches=2", "--test_after_fit=false"])
    assert cli.model.optim.lr == pytest.approx(params["model.optim.lr"])
    assert cli.datamodule.image_size == params["data.image_size"]
    assert "val/acc" in cli.trainer.callback_metrics
    assert Path(tmp_path / "runs/wandb/wandb").is_dir()
