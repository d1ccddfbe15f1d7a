"""Region boxes contain their landmarks; a flip keeps left_eye on the image's left."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from lightning_fer.data.regions import PART_POINTS, REGIONS, check_views, five_points, flip_points, region_boxes
from lightning_fer.data.synthetic import _subject, draw_face
from lightning_fer.data.transforms import FaceTransform


def _faces(n=12, size=128):
    for i in range(n):
        rng = np.random.default_rng(i)
        yield draw_face(_subject(rng), ["neutral", "happy", "surprise", "anger"][i % 4], rng, size)


def _inside(box, pts, tol=1e-3):
    return np.all((pts[:, 0] >= box[0] - tol) & (pts[:, 0] <= box[2] + tol) & (pts[:, 1] >= box[1] - tol) & (pts[:, 1] <= box[3] + tol))


@pytest.mark.parametrize("scheme", [68, 5])
def test_boxes_contain_their_landmarks(scheme):
    for img, pts68, _ in _faces():
        pts = pts68 if scheme == 68 else five_points(pts68)
        h, w = img.shape[:2]
        boxes = region_boxes(pts, w, h)
        for part, idx in PART_POINTS[scheme].items():
            inside = pts[idx][(pts[idx] >= 0).all(1) & (pts[idx][:, 0] <= w) & (pts[idx][:, 1] <= h)]
            assert _inside(boxes[part], inside), (part, boxes[part], inside)
        assert _inside(boxes["face"], five_points(pts).clip(0, [w, h]))
        for box in boxes.values():
            assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
        # image-left eye is left, mouth below the eyes
        assert boxes["left_eye"][0] < boxes["right_eye"][0]
        assert boxes["mouth"][3] > boxes["left_eye"][3]


def test_boxes_are_clamped_to_the_image():
    pts = np.array([[-10, 5], [20, 5], [5, 20], [-5, 35], [15, 35]], np.float32)
    boxes = region_boxes(pts, 40, 40)
    for box in boxes.values():
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= 40 and box[3] <= 40 and box[2] - box[0] >= 2


@pytest.mark.parametrize("scheme", [68, 5])
def test_flip_points_keeps_left_eye_left(scheme):
    _, pts68, _ = next(_faces(1))
    pts = pts68 if scheme == 68 else five_points(pts68)
    flipped = flip_points(pts, 128)
    p5 = five_points(flipped)
    assert p5[0, 0] < p5[1, 0] and p5[3, 0] < p5[4, 0]
    # Twice is the identity.
    np.testing.assert_allclose(flip_points(flipped, 128), pts, atol=1e-4)


@pytest.mark.parametrize("scheme", [68, 5])
def test_augmented_flip_keeps_left_eye_left(scheme):
    img, pts68, box = next(_faces(1))
    pts = pts68 if scheme == 68 else five_points(pts68)
    xyxy = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    plain = FaceTransform(["left_eye", "right_eye"], 32)
    flip = FaceTransform(
        ["left_eye", "right_eye"], 32, A.Compose([A.HorizontalFlip(p=1)], keypoint_params=A.KeypointParams(format="xy"))
    )
    _, p0, b0 = plain.geometry(img, pts, xyxy)
    canvas, p1, b1 = flip.geometry(img, pts, xyxy)
    assert b1["left_eye"][0] < b1["right_eye"][0]
    assert five_points(p1)[0, 0] < five_points(p1)[1, 0]
    # The flipped face's left_eye crop is the mirror of the original's right_eye crop.
    v0, v1 = plain(img, pts, xyxy)["views"], flip(img, pts, xyxy)["views"]
    diff = np.abs(v1[0] - v0[1][:, :, ::-1]).mean()
    assert diff < 0.25, diff
    assert np.abs(v1[0] - v0[0]).mean() > diff  # and not the same eye


def test_all_views_shapes_and_rest_masks_parts():
    img, pts, box = next(_faces(1))
    tf = FaceTransform(list(REGIONS), 48)
    out = tf(img, pts)
    assert out["views"].shape == (6, 3, 48, 48) and out["image"].shape == (3, 48, 48)
    assert out["views"].dtype == np.float32 and np.isfinite(out["views"]).all()
    np.testing.assert_array_equal(out["image"], out["views"][0])
    rest = out["views"][5]
    # Masked parts take the ImageNet mean, which normalises to (about) zero.
    assert (np.abs(rest).max(0) < 0.02).mean() > 0.15
    assert (np.abs(out["views"][0]).max(0) < 0.02).mean() < 0.05


def test_views_are_checked():
    with pytest.raises(ValueError, match=r"unknown view\(s\) \['chin'\]"):
        check_views(["face", "chin"])
    with pytest.raises(ValueError, match="at least one"):
        check_views([])
