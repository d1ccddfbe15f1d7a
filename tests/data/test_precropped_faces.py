"""Pre-cropped faces (``face_box: image``) and views that cannot be located (``view_mask``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from user_sources import ShiftedLandmarks

from lightning_fer import FERDataModule
from lightning_fer.data.regions import PARTS, region_coverage
from lightning_fer.data.transforms import denormalize

VIEWS = ["face", "left_eye", "right_eye", "nose", "mouth", "rest"]


def _precropped_folder(root, n_per_class=3, size=48):
    """Smooth random textures, 48 px, in a class-folder layout: crops with no face MTCNN can find."""
    rng = np.random.default_rng(0)
    images = {}
    for split in ("train", "test"):
        for cls in ("happy", "sad"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n_per_class):
                img = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (7, 7), 2)
                path = root / split / cls / f"{i}.png"
                cv2.imwrite(str(path), img[..., ::-1])  # written as BGR, read back as RGB
                images[str(path)] = img
    return images


@pytest.mark.parametrize("image_size", [48, 64])
def test_face_view_of_a_precropped_face_is_the_resized_image(tmp_path, image_size):
    images = _precropped_folder(tmp_path / "crops")
    dm = FERDataModule("folder", str(tmp_path / "crops"), views=VIEWS, image_size=image_size, face_box="image",
                       training={"augment": False}, folds={"fold": 0, "num_folds": 2},
                       loader={"batch_size": 4, "num_workers": 0})
    dm.prepare_data()
    dm.setup()
    assert dm.index_report.kinds == {"template_fallback": 12} and dm.index_report.located == 0
    assert "parts located on 0 of 12 usable faces (0.0%)" in str(dm.index_report)
    ds = dm.datasets["test"]
    for i in range(len(ds)):
        item = ds[i]
        face = denormalize(item["views"][0].numpy()).astype(int)
        expected = cv2.resize(images[ds.paths[i]], (image_size, image_size), interpolation=cv2.INTER_LINEAR).astype(int)
        if image_size == 48:  # FER2013's case: the crop itself, pixel for pixel (up to normalisation)
            assert np.abs(face - expected).max() <= 1
        else:  # bilinear in both; the outermost ring blends with the padding, the rest agrees
            assert np.abs(face - expected)[2:-2, 2:-2].max() <= 1
        # Template landmarks on a face MTCNN did not find: every part (and rest) is missing.
        assert item["view_mask"].tolist() == [True, False, False, False, False, False]
    batch = next(iter(dm.test_dataloader()))
    assert batch["view_mask"].shape == (4, 6) and batch["view_mask"].dtype == torch.bool


def test_face_box_annotation_needs_boxes_and_unknown_values_are_refused(tmp_path):
    _precropped_folder(tmp_path / "crops")
    dm = FERDataModule("folder", str(tmp_path / "crops"), image_size=48, face_box="annotation",
                       folds={"fold": 0, "num_folds": 2}, loader={"num_workers": 0})
    dm.prepare_data()
    with pytest.raises(ValueError, match="face_box='annotation', but 12 record"):
        dm.setup()
    with pytest.raises(ValueError, match="face_box must be"):
        FERDataModule("folder", str(tmp_path / "crops"), face_box="whole")


def test_parts_mostly_outside_the_image_are_missing(tmp_path):
    src = ShiftedLandmarks(str(tmp_path), num_subjects=6, images_per_class=1, test_subjects=1, image_size=64)
    dm = FERDataModule(src, views=VIEWS, image_size=32, folds={"fold": 0, "num_folds": 3},
                       loader={"batch_size": 8, "num_workers": 0})
    dm.prepare_data()
    dm.setup()
    records = dm.records
    for name, ds in dm.datasets.items():
        for row, idx in zip(ds.view_mask, ds.indices):
            shifted = idx % 3 == 0
            cover = region_coverage(records[idx].landmarks, 64, 64)
            assert row[0] and row[5]  # the face is always there; rest: the parts are located (annotated)
            assert row[1:5].tolist() == [cover[p] >= 0.5 for p in PARTS]
            assert not shifted or not row[1:5].any(), (name, idx, cover)
            assert shifted or row.all()
    masks = np.concatenate([ds.view_mask for ds in dm.datasets.values()])
    assert 0 < (~masks).sum() < masks.size


def test_min_view_inside_must_be_a_share(tmp_path):
    with pytest.raises(ValueError, match=r"landmarks.min_inside must be in \[0, 1\], got 1.5"):
        FERDataModule("folder", str(tmp_path), landmarks={"min_inside": 1.5})
