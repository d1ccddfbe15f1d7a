"""Shared fixtures: small real inputs written to tmp_path, and the real FER2013 faces."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
FER2013 = Path(os.environ.get("LIGHTNING_FER_FER2013", REPO.parent / "shared" / "data" / "fer2013"))


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


def tiny_args(root: str | Path, subjects: int = 17) -> list[str]:
    """CLI overrides for a tiny demo set: `subjects` people (2 held out), one image per class,
    80 px, so that fold 0 of 5 validates 3 people x 7 = 21 images (an odd count)."""
    return [
        "--data.init_args.source=lightning_fer.data.SyntheticSource",
        f"--data.init_args.source.init_args.root={root}",
        f"--data.init_args.source.init_args.num_subjects={subjects}",
        "--data.init_args.source.init_args.images_per_class=1",
        "--data.init_args.source.init_args.test_subjects=2",
        "--data.init_args.source.init_args.image_size=80",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


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


def parse_only(args: list[str]):
    """Parse (and validate) a CLI command's options without building or running anything."""
    import lightning as L

    from lightning_fer.build import FERCLI
    from lightning_fer.data import FERDataModule

    class ParseOnly(FERCLI):
        def instantiate_classes(self):
            pass

    return ParseOnly(L.LightningModule, FERDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     parser_kwargs={"parser_mode": "omegaconf+"}, args=args, run=False)
