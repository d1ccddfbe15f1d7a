"""``landmarks: dlib``: Dlib's 68-point shape predictor (the paper's landmarks) on the annotated
box, on MTCNN's box, or on the whole crop for pre-cropped faces; cached like the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lightning_fer import FERDataModule
from lightning_fer.data.detection import LandmarkSettings
from lightning_fer.data.sources import SyntheticSource

dlib = pytest.importorskip("dlib", reason='landmarks: dlib needs pip install "lightning-fer[dlib]" (dlib-bin)')
try:
    from lightning_fer.data.detection import dlib_model_path

    dlib_model_path()
except ImportError as err:  # pragma: no cover - depends on the machine
    pytest.skip(f"Dlib's 68-point model is not installed: {err}", allow_module_level=True)

FER2013 = Path(__file__).resolve().parents[3] / "shared" / "data" / "fer2013"


def test_dlib_points_follow_the_exact_landmarks_of_the_demo_faces(tmp_path):
    """On the synthetic faces, whose 68 points are known exactly, Dlib on the annotated box lands
    within a few pixels of them, and the index caches its 68 points."""
    src = SyntheticSource(str(tmp_path / "s"), num_subjects=4, images_per_class=1, test_subjects=1, image_size=96)
    dm = FERDataModule(src, landmarks="dlib", views=["face", "mouth"], image_size=32, num_workers=0, num_folds=2,
                       cache_dir=str(tmp_path / "c"))
    dm.prepare_data()
    assert dm.index_report.kinds == {"dlib": 28} and dm.index_report.located == 28
    records, entries = dm.prepared.index()
    err = np.array([np.abs(entries[r.key].points - r.landmarks).mean() for r in records])
    assert entries[records[0].key].points.shape == (68, 2)
    assert err.mean() < 0.04 * 96 and err.max() < 0.08 * 96, err  # measured: 2.2 px mean, 4.2 max at 96 px
    again = FERDataModule(src, landmarks="dlib", views=["face", "mouth"], image_size=32, num_workers=0, num_folds=2,
                          cache_dir=str(tmp_path / "c"))
    again.prepare_data()
    assert again.index_report.from_cache == 28 and again.index_report.computed == 0
    again.setup("fit")
    batch = next(iter(again.train_dataloader()))
    assert tuple(batch["views"].shape[1:]) == (2, 3, 32, 32) and bool(batch["view_mask"].all())


def test_the_dlib_setting_is_part_of_the_cache_key_and_follows_face_box(tmp_path):
    assert LandmarkSettings(mode="dlib").fingerprint() != LandmarkSettings(mode="dlib", dlib_on="image").fingerprint()
    # The other modes' caches stay valid: their key does not grow the Dlib fields.
    assert "dlib_on" not in LandmarkSettings(mode="mtcnn").fingerprint()
    dm = FERDataModule("synthetic", root=str(tmp_path), landmarks="dlib", face_box="image")
    assert dm.landmark_settings.dlib_on == "image"
    with pytest.raises(FileNotFoundError, match="landmarks.dlib_model /nowhere.dat does not exist"):
        dlib_model_path("/nowhere.dat")


@pytest.mark.skipif(not (FER2013 / "train").is_dir(), reason=f"FER2013 not found at {FER2013}")
def test_dlib_locates_the_parts_of_pre_cropped_fer2013_faces(tmp_path):
    """On FER2013's 48 px crops (face_box: image) Dlib runs on the whole crop, no detector: every
    face gets its parts, the eyes above the mouth, inside the crop."""
    for label in ("happy", "sad"):
        files = sorted((FER2013 / "train" / label).iterdir())[:6]
        (tmp_path / "d" / "train" / label).mkdir(parents=True)
        for f in files:
            shutil.copy(f, tmp_path / "d" / "train" / label / f.name)
    dm = FERDataModule("folder", str(tmp_path / "d"), views=["face", "left_eye", "right_eye", "mouth"], image_size=24,
                       channels=1, num_workers=0, fold=None, landmarks="dlib", face_box="image",
                       cache_dir=str(tmp_path / "c"))
    dm.prepare_data()
    assert dm.index_report.kinds == {"dlib": 12}
    records, entries = dm.prepared.index()
    for r in records:
        pts = entries[r.key].points
        inner = pts[27:]  # nose, eyes, mouth (the jaw line may leave a tight crop)
        assert pts.shape == (68, 2) and (inner >= -2).all() and (inner <= 50).all()
        assert pts[36:48, 1].mean() < pts[48:68, 1].mean()  # eyes above the mouth
    dm.setup("fit")
    assert bool(next(iter(dm.train_dataloader()))["view_mask"].all())
