"""EnsembleModule on members trained through the real CLI: batching, experts, leaks, the CLI,
DDP, and the cross-validated run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, tiny_args

from lightning_fer import EnsembleModule, FERClassifier, FERDataModule
from lightning_fer.cli import main
from lightning_fer.data.sources import SyntheticSource
from lightning_fer.ensemble import DataLeakError, HardVote, SoftVote, Stacking

PARTS = ["left_eye", "right_eye", "nose", "mouth", "rest"]


def _dm(members, fold=0, views=PARTS, size=80):
    root = members["dir"] / "synthetic"
    src = SyntheticSource(str(root), num_subjects=17, images_per_class=1, test_subjects=2, image_size=80)
    dm = FERDataModule(src, views=views, image_size=size, folds={"fold": fold},
                       loader={"batch_size": 5, "num_workers": 0})
    dm.prepare_data()
    dm.setup()
    return dm


def test_members_run_batched_over_views_and_match_one_by_one(trained_members):
    ckpts = [str(p) for p in trained_members["ckpts"].values()]
    ens = EnsembleModule(ckpts, HardVote(), views=PARTS)
    assert all(not p.requires_grad for p in ens.parameters())
    ens.train()
    assert not any(m.training for m in ens.members)  # frozen members stay in eval mode
    dm = _dm(trained_members)
    batch = next(iter(dm.test_dataloader()))
    logits = ens.member_logits(batch["views"])
    assert logits.shape == (5, 3, 5, 7)
    # The same numbers as a naive loop, member by member and view by view.
    for i, m in enumerate(ens.members):
        for v in range(5):
            x = batch["views"][:, v]
            if x.shape[-1] != m.image_size:
                x = torch.nn.functional.interpolate(x, size=m.image_size, mode="bilinear", antialias=True)
            torch.testing.assert_close(logits[:, i, v], m(x), atol=1e-4, rtol=1e-4)
    assert ens(batch["views"]).shape == (5, 7)


def test_region_expert_is_bound_to_its_region(trained_members):
    face = FERClassifier.load_from_checkpoint(trained_members["ckpts"]["sppnet"], weights_only=True)
    mouth = FERClassifier("sppnet", image_size=80, region="mouth", class_names=face.class_names)
    ens = EnsembleModule([face, mouth], SoftVote(), views=PARTS)
    assert ens.mask[0].all() and ens.mask[1].tolist() == [v == "mouth" for v in PARTS]
    logits = ens.member_logits(torch.randn(2, 5, 3, 80, 80))
    assert (logits[:, 1, :3] == 0).all() and (logits[:, 1, 3] != 0).any()
    with pytest.raises(ValueError, match="expert on 'mouth'"):
        EnsembleModule([face, mouth], views=["face"])


def test_members_must_agree_on_classes(trained_members):
    a = FERClassifier.load_from_checkpoint(trained_members["ckpts"]["sppnet"], weights_only=True)
    b = FERClassifier("sppnet", num_classes=7, image_size=80, class_names=["a", "b", "c", "d", "e", "f", "g"])
    with pytest.raises(ValueError, match="disagree on class names"):
        EnsembleModule([a, b])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EnsembleModule(["/nonexistent/best.ckpt"])


def test_stacking_refuses_leaking_members(trained_members):
    ckpts = [str(p) for p in trained_members["ckpts"].values()]
    ens = EnsembleModule(ckpts, Stacking(), views=["face"])
    # Members were trained on folds 1-4: fitting on fold 1 would use their training images.
    with pytest.raises(DataLeakError, match="trained with fold=0, but the held-out data has fold=1"):
        ens.fit_strategy(_dm(trained_members, fold=1, views=["face"]))
    # A member without a fingerprint cannot be checked, so it is refused too.
    bare = FERClassifier("sppnet", image_size=80, class_names=ens.class_names)
    with pytest.raises(DataLeakError, match="no data fingerprint"):
        EnsembleModule([ckpts[0], bare], Stacking(), views=["face"]).fit_strategy(_dm(trained_members, views=["face"]))
    # Fold 0 is what they were held out from: allowed.
    ens.fit_strategy(_dm(trained_members, fold=0, views=["face"]))
    assert ens.strategy.is_fitted


def _members_arg(trained_members):
    return "--model.init_args.members=" + json.dumps([str(p) for p in trained_members["ckpts"].values()])


def _metrics(root: Path) -> dict[str, float]:
    out = {}
    for f in sorted(root.rglob("metrics.csv"), key=os.path.getmtime):
        for r in csv.DictReader(open(f)):
            out.update({k: float(v) for k, v in r.items() if v not in ("", None)})
    return out


@pytest.mark.parametrize("name", ["hard", "soft", "stacking", "regions"])
def test_ensemble_configs_through_the_cli(trained_members, tmp_path, monkeypatch, name):
    """Includes the paper's region vote: three backbones x five regions, end to end."""
    monkeypatch.chdir(tmp_path)
    cfg = str(REPO / "configs" / "demo" / f"ensemble_{name}.yaml")
    args = ["--config", cfg, *trained_members["args"], _members_arg(trained_members)]
    cli = main(["test", *args])
    m = cli.trainer.callback_metrics
    assert "test/f1" in m
    # The logged figure is the accuracy of the ensemble's own forward over the test split, at the
    # trainer's precision (bf16 autocast on CPUs with bf16 units: a float32 forward may flip ties).
    right = total = 0
    with torch.no_grad(), cli.trainer.precision_plugin.forward_context():
        for batch in cli.datamodule.test_dataloader():
            pred = cli.model(batch["views"], batch.get("view_mask"), batch.get("image")).argmax(1)
            right, total = right + int((pred == batch["label"]).sum()), total + len(pred)
    assert float(m["test/acc"]) == pytest.approx(right / total, abs=1e-6) and total == 14
    if name == "regions":
        assert cli.model.views == PARTS and cli.model.mask.shape == (3, 5) and cli.model.mask.all()
    if name == "stacking":
        assert cli.model.strategy.is_fitted
    main(["validate", *args])
    assert "val/acc" in _metrics(tmp_path / "runs")


def test_user_strategy_by_class_path_through_the_cli(trained_members, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = str(REPO / "configs" / "demo" / "ensemble_hard.yaml")
    cli = main(["test", "--config", cfg, *trained_members["args"], _members_arg(trained_members),
                "--model.strategy=user_strategies.MaxConfidence",
                "--model.strategy.floor=0.2"])
    assert type(cli.model.strategy).__name__ == "MaxConfidence" and cli.model.strategy.floor == 0.2
    assert "test/acc" in cli.trainer.callback_metrics


@pytest.mark.slow  # two processes per case: run with -m slow
@pytest.mark.parametrize("name", ["soft", "stacking", "regions"])
def test_ensemble_ddp_validation_matches_single_process(trained_members, tmp_path, name):
    """Two CPU processes give the single-process figures; a learning strategy is fitted on the
    whole held-out split in every process, not on each process's shard. One thread per process in
    both runs: Lightning gives each DDP process one, and the fit's floating-point sums must match.
    ``regions``: the paper's five regions with stacking, on faces a third of which have their parts
    missing (tests/user_sources.py): the per-sample view masks survive DDP."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}", OMP_NUM_THREADS="1")
    cfg = str(REPO / "configs" / "demo" / f"ensemble_{name}.yaml")
    args = trained_members["args"]
    if name == "regions":
        args = ["--data.init_args.source=user_sources.ShiftedLandmarks" if a.startswith("--data.init_args.source=")
                else a for a in args] + ["--model.init_args.strategy=lightning_fer.ensemble.Stacking"]
    base = ["--config", cfg, *args, _members_arg(trained_members)]
    figures = {}
    for label, extra in (("single", []), ("ddp", ["--trainer.devices=2", "--trainer.strategy=ddp"])):
        proc = subprocess.run([sys.executable, "-m", "lightning_fer", "validate", *base,
                               f"--trainer.logger.init_args.save_dir=logs_{label}", *extra],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        figures[label] = _metrics(tmp_path / f"logs_{label}")
    assert len(_dm(trained_members, views=["face"]).datasets["val"]) % 2 == 1
    for key in ("val/acc", "val/balanced_acc", "val/precision", "val/recall", "val/f1"):
        assert figures["ddp"][key] == pytest.approx(figures["single"][key], abs=1e-6), key


def test_cv_writes_table_ii_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    members = [str(REPO / "configs" / "demo" / "sppnet.yaml"), str(REPO / "configs" / "demo" / "resnet50.yaml")]
    argv = ["--lineup.members", json.dumps(members), "--output_dir", "cv", "--folds.folds", "[0, 1]", "--folds.num_folds", "3",
            "--collect.views", '["face", "mouth"]',
            "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8),
                                       "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])]
    result = main(["cv", *argv, "--wandb_project", "fer-cv-test"])
    out = tmp_path / "cv"
    from lightning_fer.loggers import read_offline_run

    (run_dir,) = sorted((out / "wandb").glob("offline-run-*"))
    logged = read_offline_run(run_dir)
    keys = set().union(*logged["history"])
    assert "table2/_type" in keys and "confusion/stacking/_type" in keys
    assert logged["summary"]["Stacking/acc_mean"] == pytest.approx(result["rows"]["Stacking"][0]["acc"] / 2
                                                                   + result["rows"]["Stacking"][1]["acc"] / 2)
    table = (out / "table2.md").read_text()
    # Views with the face and a part: every strategy on both, on the face alone, on the part alone.
    for row in ("sppnet", "resnet50", "HardVote", "SoftVote", "Stacking", "HardVote [faces]", "Stacking [regions]"):
        assert f"| {row} |" in table
    rows = list(csv.DictReader(open(out / "table2.csv")))
    assert len(rows) == 2 + 3 * 3 and all(r["runs"] == "2" for r in rows)
    for r in rows:  # the CSV's mean is the mean of the per-run figures cv returned
        assert float(r["acc mean"]) == pytest.approx(100 * sum(f["acc"] for f in result["rows"][r["model"]]) / 2, abs=1e-3)
    pngs = sorted(out.glob("confusion_*.png"))
    assert len(pngs) == 11 and all(p.stat().st_size > 10_000 for p in pngs)
    assert len(result["rows"]["Stacking"]) == 2
    # Resume: nothing is trained or collected again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("done.json")} | {p: p.stat().st_mtime_ns for p in out.rglob("predictions.pt")}
    assert len(stamps) == 6
    main(["cv", *argv])
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_cv_seeds_train_each_member_once_per_seed(tmp_path, monkeypatch):
    """``seeds``: one run per (fold, seed), the same folds, different weights; the table pools
    the runs and a learning strategy is fitted per seed."""
    monkeypatch.chdir(tmp_path)
    argv = ["cv", "--lineup.members", json.dumps([str(REPO / "configs" / "demo" / "sppnet.yaml")]), "--output_dir", "cv",
            "--folds.folds", "[0]", "--folds.num_folds", "3", "--folds.seeds", "[0, 1]", "--collect.views", '["face"]',
            "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8),
                                       "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])]
    result = main(argv)
    out = tmp_path / "cv"
    dones = sorted(out.rglob("done.json"))
    assert [p.parent.parent.name for p in dones] == ["fold0-seed0", "fold0-seed1"]
    states = [torch.load(json.loads(p.read_text())["checkpoint"], weights_only=True)["state_dict"] for p in dones]
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0] if k.endswith("weight"))
    preds = [torch.load(out / run / "predictions.pt", weights_only=True) for run in ("fold0-seed0", "fold0-seed1")]
    assert torch.equal(preds[0]["test_labels"], preds[1]["test_labels"])  # same test set, same order
    assert preds[0]["data_print"] == preds[1]["data_print"]  # the same fold for both seeds
    assert all(len(v) == 2 for v in result["rows"].values())
    assert "x seeds [0, 1]" in (out / "table2.md").read_text()
    rows = list(csv.DictReader(open(out / "table2.csv")))
    assert {r["model"] for r in rows} == {"sppnet", "HardVote", "SoftVote", "Stacking"}
    assert all(r["runs"] == "2" for r in rows)


@pytest.mark.parametrize("member_batch", [1, 4, 7, 100])
def test_member_batch_splits_calls_without_changing_results(member_batch):
    torch.manual_seed(0)
    members = [FERClassifier("resnet18", image_size=32), FERClassifier("sppnet", image_size=40)]
    views = torch.randn(5, 3, 3, 32, 32)
    whole = EnsembleModule(members, SoftVote(), views=["face", "mouth", "nose"])
    split = EnsembleModule(members, SoftVote(), views=["face", "mouth", "nose"], member_batch=member_batch)
    torch.testing.assert_close(split.member_logits(views), whole.member_logits(views), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="member_batch must be a positive"):
        EnsembleModule(members, views=["face"], member_batch=0)
