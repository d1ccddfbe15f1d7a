"""The real CLI on the shipped configs: parse every config, train each demo config, then
validate, test and predict from the checkpoint it wrote; DDP as two CPU processes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import REPO, parse_only, tiny_args

from lightning_fer.cli import main
from lightning_fer.ensemble.strategy import EnsembleStrategy

# Complete experiment configs (sweeps/ and loggers/ are tested in their own files).
EXPERIMENTS = [REPO / "configs" / d for d in ("demo", "fer2013", "affectnet", "fer2013/zoo")]
CONFIGS = sorted(p for d in EXPERIMENTS for p in d.glob("*.yaml") if not p.stem.startswith(("cv", "data")) and p.stem != "ensemble")  # bases
CV_CONFIGS = sorted(p for d in EXPERIMENTS for p in d.glob("cv*.yaml"))
DEMO = [REPO / "configs" / "demo" / f"{b}.yaml" for b in ("inception_v3", "resnet50", "sppnet")]


pytestmark = pytest.mark.usefixtures("isolated")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_parses(config):
    cli = parse_only(["--config", str(config)])
    cfg = cli.config
    assert cfg.data.class_path == "lightning_fer.FERDataModule"
    # Linked from the data at parse time.
    assert cfg.model.init_args.image_size == cfg.data.init_args.image_size
    if config.stem.startswith("ensemble_"):
        assert cfg.model.class_path == "lightning_fer.EnsembleModule"
        assert len(cfg.model.init_args.members) == 3
        assert cfg.model.init_args.views == cfg.data.init_args.views
    else:
        assert cfg.model.class_path == "lightning_fer.FERClassifier"
        # member configs are named after their backbone (with a setting: sppnet_small), or after
        # their role (best_member, quick_member)
        backbone = cfg.model.init_args.backbone
        # their role (best_member, quick_member); a zoo member after itself as the lineup lists it
        assert (config.stem == backbone or config.stem.startswith(backbone + "_") or config.stem.endswith("_member")
                or config.parent.name == "zoo")


@pytest.mark.parametrize("config", CV_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cv_configs_parse(config):
    from lightning_fer.cv import parser

    p = parser()
    cfg = p.parse_args(["--config", str(config)])
    lineup, experts = cfg.lineup, cfg.experts
    listed_configs = [*lineup.members, *(experts.members or []), *lineup.students]
    assert len(lineup.members) >= (1 if lineup.students or experts.regions else 3)
    assert all((REPO / m).is_file() for m in listed_configs)
    init = p.instantiate(cfg) if hasattr(p, "instantiate") else p.instantiate_classes(cfg)
    listed = [s["class_path"].rsplit(".", 1)[-1] for s in yaml.safe_load(config.read_text())["strategies"]]
    assert [type(s).__name__ for s in init.strategies] == listed
    assert all(isinstance(s, EnsembleStrategy) for s in init.strategies)


def test_overrides_in_the_form_sweeps_pass():
    cli = parse_only(["--config", str(REPO / "configs/demo/resnet50.yaml"), "--model.optim.lr=0.05",
                       "--data.image_size=72", "--data.views=[mouth]", "--trainer.max_epochs=3"])
    assert cli.config.model.init_args.optim.lr == 0.05
    assert cli.config.data.init_args.image_size == cli.config.model.init_args.image_size == 72
    assert cli.config.data.init_args.views == ["mouth"]
    assert cli.config.trainer.max_epochs == 3


def test_help_is_fast_and_lightning_free():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "lightning_fer", "--help"],
                         capture_output=True, text=True, cwd=REPO, check=True)
    assert "fit" in out.stdout and "validate" in out.stdout
    assert "lightning.pytorch" not in out.stderr and "torch._C" not in out.stderr


def _metrics(root: Path) -> dict[str, float]:
    rows = []
    for f in sorted(root.rglob("metrics.csv"), key=os.path.getmtime):
        rows += list(csv.DictReader(open(f)))
    out = {}
    for r in rows:
        out.update({k: float(v) for k, v in r.items() if v not in ("", None)})
    return out


@pytest.mark.parametrize("config", DEMO, ids=lambda p: p.stem)
def test_demo_config_fit_validate_test_predict(config, tmp_path):
    base = ["--config", str(config), *tiny_args(tmp_path / 'synthetic')]
    main(["fit", *base, "--trainer.fast_dev_run=1"])
    main(["fit", *base, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--test_after_fit=false"])
    ckpt = tmp_path / "runs" / "demo" / config.stem / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["lightning_fer"]
    assert meta["class_names"][:2] == ["neutral", "happy"] and meta["region"] == "face"
    assert meta["data_fingerprint"]["fold"] == 0 and len(meta["data_fingerprint"]["train_hash"]) == 40
    assert meta["backbone"]["backbone"] == yaml.safe_load(config.read_text())["model"]["init_args"]["backbone"]
    for sub in ("validate", "test"):
        main([sub, *base, f"--ckpt_path={ckpt}"])
    m = _metrics(tmp_path / "runs")
    assert "test/f1_happy" in m and round(m["val/acc"] * 21, 4) == round(m["val/acc"] * 21)  # k of 21 faces
    cli = main(["predict", *base, f"--ckpt_path={ckpt}"])
    preds = cli.trainer.predict_loop.predictions
    probs = torch.cat([p["probs"] for p in preds])
    assert probs.shape == (14, 7)  # 2 test subjects x 7 images
    torch.testing.assert_close(probs.sum(1), torch.ones(14))
    # predict runs on the test split by default: its answers give the accuracy test logged.
    labels = torch.cat([p["label"] for p in preds])
    assert m["test/acc"] == pytest.approx(float((probs.argmax(1) == labels).float().mean()), abs=1e-6)


def test_bf16_mixed_trains_on_cpu(tmp_path):
    cli = main(["fit", "--config", str(REPO / "configs/demo/sppnet.yaml"), *tiny_args(tmp_path / 'synthetic'),
                "--trainer.precision=bf16-mixed", "--trainer.fast_dev_run=2", "--test_after_fit=false"])
    assert cli.trainer.precision == "bf16-mixed"
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss_epoch"])


def test_region_expert_trains_on_the_mouth(tmp_path):
    cli = main(["fit", "--config", str(REPO / "configs/demo/sppnet.yaml"), *tiny_args(tmp_path / 'synthetic'),
                "--data.views=[mouth]", "--trainer.fast_dev_run=1"])
    assert cli.model.hparams.region == "mouth"


def _run(args, cwd, env):
    proc = subprocess.run([sys.executable, "-m", "lightning_fer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # two processes: run with -m slow
def test_ddp_validation_counts_each_sample_once(tmp_path):
    """Two CPU processes through the CLI give the single-process validation figures on a
    validation set of odd size."""
    env = dict(os.environ, PYTHONPATH=str(REPO), LIGHTNING_FER_HOME=str(tmp_path / "home"))
    cfg = str(REPO / "configs/demo/sppnet.yaml")
    base = ["--config", cfg, *tiny_args(tmp_path / 'synthetic')]
    _run(["fit", *base, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--test_after_fit=false"],
         tmp_path, env)
    ckpt = tmp_path / "runs/demo/sppnet/checkpoints/best.ckpt"
    from lightning_fer import FERDataModule
    from lightning_fer.data.sources import SyntheticSource

    dm = FERDataModule(SyntheticSource(str(tmp_path / "synthetic"), num_subjects=17, images_per_class=1,
                                       test_subjects=2, image_size=80),
                       loader={"num_workers": 0})
    dm.setup()
    assert len(dm.datasets["val"]) % 2 == 1
    figures = {}
    for name, extra in (("single", []), ("ddp", ["--trainer.devices=2", "--trainer.strategy=ddp"])):
        proc = _run(["validate", *base, f"--ckpt_path={ckpt}", f"--trainer.logger.init_args.save_dir=logs_{name}",
                     *extra], tmp_path, env)
        figures[name] = _metrics(tmp_path / f"logs_{name}")
        # One check of every file per machine: local rank 0's prepare_data; rank 1 reads the index as it is.
        assert proc.stderr.count("without a check of each file") == (1 if name == "ddp" else 0), proc.stderr[-2000:]
    for key in ("val/acc", "val/balanced_acc", "val/f1", "val/precision", "val/recall"):
        assert figures["ddp"][key] == pytest.approx(figures["single"][key], abs=1e-6), key
