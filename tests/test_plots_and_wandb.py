"""Pictures written by a real run, and an offline W&B run whose files hold the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, tiny_args
from PIL import Image

from lightning_fer.cli import main
from lightning_fer.loggers import read_offline_run
from lightning_fer.plots import per_class_precision_recall, plot_confusion, plot_runs


def _is_picture(path: Path) -> bool:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"))
    return path.stat().st_size > 5_000 and arr.std() > 10  # not blank


def test_fit_writes_the_papers_pictures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs/demo/sppnet.yaml"), *tiny_args(tmp_path / "synthetic"),
          "--trainer.max_epochs=2", "--trainer.limit_train_batches=3"])
    plots = tmp_path / "runs/demo/sppnet/logs/version_0/plots"
    for name in ("confusion_val", "precision_recall_val", "learning_curves", "confusion_test", "precision_recall_test"):
        assert _is_picture(plots / f"{name}.png"), name
    assert not list(plots.glob(".*tmp*"))  # written atomically


def test_precision_recall_from_confusion(tmp_path):
    cm = np.array([[8, 2], [1, 9]])
    p, r = per_class_precision_recall(cm)
    np.testing.assert_allclose(p, [8 / 9, 9 / 11])
    np.testing.assert_allclose(r, [0.8, 0.9])
    assert _is_picture(plot_confusion(cm, ["a", "b"], "t", tmp_path / "c.png"))


def test_offline_wandb_run_holds_the_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials either
    cli = main(["fit", "--config", str(REPO / "configs/demo/sppnet.yaml"), "--config",
                str(REPO / "configs/loggers/wandb.yaml"), *tiny_args(tmp_path / "synthetic"),
                "--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--model.optim.lr=0.002"])
    import wandb

    cli.trainer.logger.experiment.finish()
    wandb.teardown()
    runs = sorted((tmp_path / "runs/wandb/wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = read_offline_run(runs[0])
    val_acc = [row["val/acc"] for row in run["history"] if "val/acc" in row]
    assert len(val_acc) == 2 and all(round(v * 21, 4) == round(v * 21) for v in val_acc)  # k of 21 faces
    keys = set().union(*run["history"])
    assert "train/loss_epoch" in keys and "test/f1_happy" in keys
    for picture in ("val/confusion_matrix", "val/precision_recall", "test/confusion_matrix", "learning_curves"):
        assert f"{picture}/_type" in keys, picture  # logged as W&B images
    assert "val/per_class/_type" in keys  # the per-class table
    assert run["summary"]["test/acc"] == pytest.approx(float(cli.trainer.callback_metrics["test/acc"]))
    optim = run["config"].get("optim") or {k.split("/", 1)[1]: v for k, v in run["config"].items() if k.startswith("optim/")}
    assert optim["lr"] == 0.002 and run["config"]["backbone"] == "sppnet"  # hyperparameters (the optim group)


def test_runs_are_drawn_a_line_each_and_an_empty_picture_is_refused(tmp_path):
    """The zoo's learning curves: members side by side (the train/val picture of one run drew none of
    them, an empty frame, in the zoo report of 2026-12-03)."""
    two = plot_runs({"a": [(0, 0.2), (1, 0.4)], "b": [(0, 0.3)]}, "t", tmp_path / "two.png")
    three = plot_runs({"a": [(0, 0.2), (1, 0.4)], "b": [(0, 0.3)], "c": [(0, 0.5), (1, 0.6)]}, "t", tmp_path / "3.png")
    assert two.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and two.read_bytes() != three.read_bytes()
    pixels = np.asarray(Image.open(two).convert("RGB"), dtype=np.int32)
    coloured = (pixels.max(-1) - pixels.min(-1) > 60).sum()  # the lines and markers: grey and white are not
    assert coloured > 200
    with pytest.raises(ValueError, match="no run has a figure to draw"):
        plot_runs({"a": []}, "t", tmp_path / "none.png")
