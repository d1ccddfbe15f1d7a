"""Bad files: a clear error naming each one, or a counted and listed skip when asked."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lightning_fer.data import BadImagesError, FERDataModule
from lightning_fer.data.io import ImageReadError, load_image_checked, read_image
from lightning_fer.data.sources import ManifestSource, format_landmarks, write_manifest
from lightning_fer.data.synthetic import _subject, draw_face


def _face(i: int, size: int = 96):
    rng = np.random.default_rng(i)
    return draw_face(_subject(rng), ["happy", "sad", "anger"][i % 3], rng, size)


@pytest.fixture
def bad_set(tmp_path):
    """Twelve good faces plus one file of each kind of trouble, in a manifest."""
    d = tmp_path / "faces"
    d.mkdir()
    rows = []

    def add(name, i):
        _, pts, box = _face(i)
        rows.append(dict(path=name, label=["happy", "sad", "anger"][i % 3], subject=f"p{i % 6}",
                         face_x=box[0], face_y=box[1], face_width=box[2], face_height=box[3],
                         landmarks=format_landmarks(pts)))

    for i in range(12):
        img, _, _ = _face(i)
        cv2.imwrite(str(d / f"good{i}.jpg"), img[:, :, ::-1])
        add(f"good{i}.jpg", i)
    img, _, _ = _face(20)
    Image.fromarray(img).convert("CMYK").save(d / "cmyk.jpg")
    add("cmyk.jpg", 20)
    cv2.imwrite(str(d / "deep.png"), img[:, :, ::-1].astype(np.uint16) * 257)
    add("deep.png", 21)
    good = (d / "good0.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(good[:200] + np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes())
    add("corrupt.jpg", 22)
    cv2.imwrite(str(d / "full.png"), img[:, :, ::-1])
    (d / "truncated.png").write_bytes((d / "full.png").read_bytes()[:2000])
    (d / "full.png").unlink()
    add("truncated.png", 23)
    (d / "notes.jpg").write_text("this is a text file, not a picture\n")
    add("notes.jpg", 24)
    add("missing.jpg", 25)
    write_manifest(d / "manifest.csv", rows)
    return d


BAD = {"corrupt.jpg", "truncated.png", "notes.jpg", "missing.jpg"}


def test_cmyk_and_16_bit_load(bad_set):
    for name in ("cmyk.jpg", "deep.png"):
        strict = load_image_checked(str(bad_set / name))
        fast = read_image(str(bad_set / name))
        assert strict.shape == fast.shape == (96, 96, 3) and strict.dtype == fast.dtype == np.uint8
        assert np.abs(strict.astype(int) - fast.astype(int)).mean() < 3
    assert read_image(str(bad_set / "deep.png")).mean() > 20  # scaled to 8 bits, not clipped to black/white


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("corrupt.jpg", "cannot decode"),
        ("truncated.png", "cannot decode"),
        ("notes.jpg", "not an image"),
        ("missing.jpg", "file not found"),
    ],
)
def test_checker_names_file_and_reason(bad_set, name, reason):
    with pytest.raises(ImageReadError, match=reason) as err:
        load_image_checked(str(bad_set / name))
    assert name in str(err.value)


def test_prepare_data_fails_listing_every_bad_file(bad_set, tmp_path):
    dm = FERDataModule(ManifestSource(bad_set / "manifest.csv"), image_size=32, folds={"num_folds": 3},
                       records={"cache_dir": str(tmp_path / "cache")}, loader={"num_workers": 0})
    with pytest.raises(BadImagesError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert msg.startswith("4 image(s) cannot be used")
    for name in BAD:
        assert name in msg
    for name in ("cmyk.jpg", "deep.png", "good0.jpg"):
        assert name not in msg
    assert "skip_bad_images" in msg  # says what to do


def test_skip_bad_images_counts_and_lists(bad_set, tmp_path):
    dm = FERDataModule(ManifestSource(bad_set / "manifest.csv"), image_size=32, folds={"num_folds": 3},
                       records={"skip_bad_images": True, "cache_dir": str(tmp_path / "cache")},
                       loader={"batch_size": 4, "num_workers": 0})
    dm.prepare_data()
    dm.setup("fit")
    listed = list(csv.DictReader(open(tmp_path / "cache" / "skipped.csv")))
    assert {Path(r["path"]).name for r in listed} == BAD
    assert all(r["reason"] for r in listed)
    assert dm.index_report.bad == 4
    used = sum(len(ds) for name, ds in dm.datasets.items() if name != "test")  # no test split: test = val
    assert used == 14  # 12 good + CMYK + 16-bit
    for batch in dm.train_dataloader():
        assert np.isfinite(batch["views"].numpy()).all()
