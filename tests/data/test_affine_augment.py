"""The one-warp-per-view path (AffineAugment, and evaluation): the same pictures as the
albumentations path without augmentation, landmarks that follow the image, flips that keep
left_eye left, seeded draws, photometric changes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lightning_fer import FERDataModule
from lightning_fer.data.augment import AffineAugment, train_augmentation
from lightning_fer.data.regions import REGIONS
from lightning_fer.data.transforms import FaceTransform, denormalize

PTS = np.array([[70, 80], [130, 80], [100, 112], [78, 142], [122, 142]], np.float32)
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255)]


def _face(size: int = 200, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A grey face with a coloured disc on each of the five landmarks."""
    img = np.full((size, size, 3), 90, np.uint8)
    pts = PTS * scale
    cv2.circle(img, (int(100 * scale), int(110 * scale)), int(75 * scale), (150, 150, 150), -1)
    for (x, y), c in zip(pts, COLOURS):
        cv2.circle(img, (int(x), int(y)), max(int(7 * scale), 2), c, -1)
    return img, pts


def _identity_albumentations():
    return train_augmentation(hflip=0, rotate=0, scale=(1, 1), translate=0, brightness_contrast=0, grayscale=0)


@pytest.mark.parametrize("scale", [1.0, 4.0])  # 4x: the big-face path (canvas shrunk first)
def test_without_augmentation_matches_the_albumentations_path(scale):
    img, pts = _face(int(200 * scale), scale)
    fast = FaceTransform(list(REGIONS), 48, None)(img, pts)["views"]
    slow = FaceTransform(list(REGIONS), 48, _identity_albumentations())(img, pts)["views"]
    diff = np.abs(fast - slow).mean(axis=(1, 2, 3))
    assert fast.shape == slow.shape == (6, 3, 48, 48) and fast.dtype == np.float32
    assert diff.max() < 0.2, diff  # interpolation and box rounding only (1.0 = one std of a channel)


@pytest.mark.parametrize("seed", range(5))
def test_landmarks_follow_the_image(seed):
    """Under rotations up to 25 degrees, scaling and shifts, each eye's disc sits where the eye
    box puts the eye (centred across, 0.15 of the eye distance above centre... so below the
    box centre by 0.15 / 0.8 of its height): the warp moved the points and pixels alike."""
    img, pts = _face()
    aug = AffineAugment(hflip=0.0, rotate=25, scale=(0.8, 1.2), translate=0.1, p_affine=1.0,
                        p_brightness_contrast=0.0, grayscale=0.0)
    aug.set_random_seed(seed)
    views = denormalize(FaceTransform(["left_eye", "right_eye"], 32, aug)(img, pts)["views"]).astype(int)
    for view, colour in zip(views, COLOURS[:2]):
        ys, xs = np.nonzero(np.abs(view - colour).sum(-1) < 90)
        assert len(ys) >= 10, "the eye's disc is not in its view"
        assert abs(xs.mean() - 15.5) < 3 and abs(ys.mean() - (15.5 + 32 * 0.15 / 0.8)) < 3, (xs.mean(), ys.mean())


def test_flip_keeps_left_eye_left_and_mirrors_the_other_eye():
    img, pts = _face()
    plain = FaceTransform(["left_eye", "right_eye"], 32, None)(img, pts)["views"]
    flipped = FaceTransform(["left_eye", "right_eye"], 32, AffineAugment(hflip=1.0, p_affine=0.0,
                                                                        p_brightness_contrast=0.0, grayscale=0.0))
    out = flipped(img, pts)["views"]
    diff = np.abs(out[0] - plain[1][:, :, ::-1]).mean()
    assert diff < 0.25, diff
    assert np.abs(out[0] - plain[0]).mean() > 3 * diff  # the left view now shows the other eye's disc


def test_draws_are_seeded_and_photometric_changes_apply():
    img, pts = _face()
    tf = FaceTransform(["face"], 32, AffineAugment())
    tf.augment.set_random_seed(3)
    a = [tf(img, pts)["image"] for _ in range(3)]
    tf.augment.set_random_seed(3)
    b = [tf(img, pts)["image"] for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])
    grey = FaceTransform(["face"], 32, AffineAugment(hflip=0, p_affine=0, p_brightness_contrast=0, grayscale=1.0))
    g = denormalize(grey(img, pts)["image"]).astype(int)
    assert np.abs(g[..., 0] - g[..., 1]).max() <= 1 and np.abs(g[..., 1] - g[..., 2]).max() <= 1
    bright = FaceTransform(["face"], 32, AffineAugment(hflip=0, p_affine=0, p_brightness_contrast=1.0, grayscale=0,
                                                       brightness_contrast=0.9))
    plain = FaceTransform(["face"], 32, None)(img, pts)["image"]
    outs = [bright(img, pts)["image"] for _ in range(8)]
    lo = (0 - np.array([0.485, 0.456, 0.406]) * 255) / (np.array([0.229, 0.224, 0.225]) * 255)
    hi = lo + 1 / np.array([0.229, 0.224, 0.225])
    assert all((o.min(axis=(1, 2)) >= lo - 1e-5).all() and (o.max(axis=(1, 2)) <= hi + 1e-5).all() for o in outs)
    assert any(np.abs(o - plain).mean() > 0.1 for o in outs)


@pytest.mark.parametrize("augmentation", ["affine", "albumentations"])
def test_data_module_uses_either_path(synthetic_source, tmp_path, augmentation):
    dm = FERDataModule(synthetic_source, views=["face", "mouth"], image_size=32,
                       training={"augmentation": augmentation}, records={"cache_dir": str(tmp_path)},
                       loader={"batch_size": 4, "num_workers": 0})
    dm.prepare_data()
    dm.setup("fit")
    expected = AffineAugment if augmentation == "affine" else type(train_augmentation())
    assert isinstance(dm.datasets["train"].transform.augment, expected)
    assert dm.datasets["val"].transform.augment is None
    batch = next(iter(dm.train_dataloader()))
    assert batch["views"].shape == (4, 2, 3, 32, 32) and batch["views"].isfinite().all()
    with pytest.raises(ValueError, match="augmentation must be 'affine' or 'albumentations'"):
        FERDataModule(synthetic_source, training={"augmentation": "kornia"})
