"""Shared fixtures: small real inputs written to tmp_path, and the real FER2013 faces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
FER2013 = Path(os.environ.get("LIGHTNING_FER_FER2013", REPO.parent / "shared" / "data" / "fer2013"))


@pytest.fixture(scope="session")
def fer2013_root() -> Path:
    """../shared/data/fer2013 (or $LIGHTNING_FER_FER2013); the test is skipped where absent."""
    if not (FER2013 / "train").is_dir():
        pytest.skip(f"FER2013 not found at {FER2013} (set LIGHTNING_FER_FER2013 to its folder)")
    return FER2013


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory):
    """A small synthetic demo set: 8 subjects x 7 expressions x 2 images, 64 px, 2 test subjects."""
    from lightning_fer.data.synthetic import SyntheticSource

    return SyntheticSource(
        str(tmp_path_factory.mktemp("synthetic")), num_subjects=8, images_per_class=2, test_subjects=2, image_size=64
    )
