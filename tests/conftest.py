"""Shared fixtures: small real inputs written to tmp_path, and the real FER2013 faces (helpers that
are not fixtures live in ``helpers.py``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from helpers import FER2013, REPO, tiny_args  # noqa: E402 (after the environment above)


@pytest.fixture(autouse=True)
def _end_wandb_session():
    """A W&B session outlives its run and keeps the settings of its first test: end it."""
    yield
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.run.finish()
        wandb.teardown()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Run in ``tmp_path`` (configs write ``runs/`` relative to the working directory), with the
    library's cache home there too."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTNING_FER_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture(scope="session")
def fer2013_root() -> Path:
    """../shared/data/fer2013 (or $LIGHTNING_FER_FER2013); the test is skipped where absent."""
    if not (FER2013 / "train").is_dir():
        pytest.skip(f"FER2013 not found at {FER2013} (set LIGHTNING_FER_FER2013 to its folder)")
    return FER2013


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory):
    """A small synthetic demo set: 8 subjects x 7 expressions x 2 images, 64 px, 2 test subjects."""
    from lightning_fer.data.sources import SyntheticSource

    return SyntheticSource(
        str(tmp_path_factory.mktemp("synthetic")), num_subjects=8, images_per_class=2, test_subjects=2, image_size=64
    )


@pytest.fixture(scope="session")
def trained_members(tmp_path_factory):
    """Three demo backbones trained briefly through the real CLI on fold 0 of the tiny set."""
    from lightning_fer.cli import main

    work = tmp_path_factory.mktemp("members")
    args = tiny_args(work / "synthetic")
    old = os.getcwd()
    os.chdir(work)
    try:
        ckpts = {}
        for name in ("inception_v3", "resnet50", "sppnet"):
            main(["fit", "--config", str(REPO / "configs" / "demo" / f"{name}.yaml"), *args,
                  "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--test_after_fit=false"])
            ckpts[name] = work / "runs" / "demo" / name / "checkpoints" / "best.ckpt"
            assert ckpts[name].is_file()
    finally:
        os.chdir(old)
    return {"dir": work, "args": args, "ckpts": ckpts}
