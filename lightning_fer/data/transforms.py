"""From a decoded image and its landmarks to normalised region views.

The face is first cut out with a margin and brought to a working size (so that a 3000 px
AffectNet photo costs as little as a 48 px FER2013 crop), then augmented (geometry applied to
the landmarks too), then cut into the requested regions, each resized to ``image_size`` and
normalised with ImageNet statistics.

Two ways to augment:

- :class:`AffineAugment` (the default): flip, rotation, scale and shift are drawn as one affine
  matrix, composed with the cut of each view, and applied by a single ``cv2.warpAffine`` per
  view straight from the decoded image; brightness, contrast and grey are applied to the small
  views. Evaluation (no augmentation) takes the same path with the identity.
- any albumentations pipeline with ``KeypointParams(format="xy")`` (e.g.
  :func:`train_augmentation`, the same distribution as :class:`AffineAugment`): applied to the
  face canvas, which is then cut into views. Flexible, and about 5x slower per item on small
  faces (``benchmarks/data_loading.py``): albumentations' per-call overhead is ~10x the cost of
  decoding a 48 px JPEG.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from lightning_fer.data.augment import IMAGENET_MEAN, IMAGENET_STD, MEAN_PIXEL, AffineAugment
from lightning_fer.data.regions import (
    FLIP_PERMUTATION,
    PARTS,
    REGIONS,
    check_views,
    face_box_from_points,
    mask_parts,
    region_boxes,
)

# Normalisation as one multiply-add on channels-first pixels: x * _SCALE + _SHIFT.
_MEAN255 = np.array(IMAGENET_MEAN, np.float32) * 255
_INV_STD = 1.0 / (np.array(IMAGENET_STD, np.float32) * 255)
_SCALE = _INV_STD.reshape(3, 1, 1)
_SHIFT = (-_MEAN255 * _INV_STD).reshape(3, 1, 1)

_TO_CONTINUOUS = np.array([[1.0, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])


_TO_INDEX = np.array([[1.0, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])


def _crop_resize(image: np.ndarray, box: Sequence[float], out_w: int, out_h: int) -> np.ndarray:
    """Crop ``box`` (x0, y0, x1, y1; may leave the image: padded with the mean) and resize."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    crop = image[cy0:cy1, cx0:cx1] if cx1 > cx0 and cy1 > cy0 else np.empty((0, 0, 3), np.uint8)
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        crop = cv2.copyMakeBorder(
            crop if crop.size else np.full((1, 1, 3), MEAN_PIXEL, np.uint8),
            cy0 - y0, max(y1 - cy1, 0), cx0 - x0, max(x1 - cx1, 0),
            cv2.BORDER_CONSTANT, value=MEAN_PIXEL,
        )[: y1 - y0, : x1 - x0]
    ch, cw = crop.shape[:2]
    if (cw, ch) == (out_w, out_h):
        return crop
    interp = cv2.INTER_AREA if cw > out_w and ch > out_h else cv2.INTER_LINEAR
    return cv2.resize(crop, (out_w, out_h), interpolation=interp)


class FaceTransform:
    """Turn ``(image, landmarks, face box)`` into normalised views ``[V, 3, S, S]`` (float32).

    Args:
        views: regions to yield, from :data:`~lightning_fer.data.regions.REGIONS`.
        image_size: side of every view in pixels.
        augment: :class:`AffineAugment` (one warp per view), an albumentations ``Compose``
            with ``KeypointParams(format="xy")`` applied to the face canvas, or ``None``
            (evaluation, the warp path without augmentation).
        margin: context kept around the face box on each side, as a fraction of its side.
        wire: ``float32``: normalised views; ``uint8``: the views' pixels (4x fewer bytes between
            processes and to the device), normalised by :func:`normalize_batch` where they arrive.
        channels: 3, or 1 for grey data: the mean of the three channels (normalised), as a
            1-channel model computes it from a colour batch.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((100, 100, 3), np.uint8)
        >>> pts = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
        >>> out = FaceTransform(["face", "mouth"], 32)(img, pts)
        >>> out["image"].shape, out["views"].shape
        ((3, 32, 32), (2, 3, 32, 32))
    """

    def __init__(
        self,
        views: Sequence[str] = ("face",),
        image_size: int = 224,
        augment: A.Compose | None = None,
        margin: float = 0.25,
        wire: str = "float32",
        channels: int = 3,
    ) -> None:
        if wire not in ("float32", "uint8"):
            raise ValueError(f"wire must be 'float32' or 'uint8', got {wire!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.wire, self.channels = wire, channels
        self.views = check_views(views)
        # The face is always cut too: batches carry it as "image" beside the views.
        self._cuts = self.views if "face" in self.views else ["face", *self.views]
        self._face = self._cuts.index("face")
        self.image_size = int(image_size)
        self.augment = augment
        self.margin = margin
        # Parts are small: keep the canvas sharper when they are asked for.
        self.face_px = self.image_size * (1 if self.views == ["face"] else 2)

    def canvas(
        self, image: np.ndarray, points: np.ndarray, face_box: Sequence[float] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cut the face with its margin at working resolution; returns image, points, face box."""
        box = np.asarray(face_box if face_box is not None else face_box_from_points(points), np.float32)
        side = float(max(box[2] - box[0], box[3] - box[1], 2.0))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        full = side * (1 + 2 * self.margin)
        f = min(1.0, self.face_px / side)  # never upsample here; views are resized at the end
        out = max(int(round(full * f)), 8)
        f = out / full
        x0, y0 = cx - full / 2, cy - full / 2
        canvas = _crop_resize(image, (x0, y0, x0 + full, y0 + full), out, out)
        shift = np.array([x0, y0], np.float32)
        pts = (np.asarray(points, np.float32) - shift) * f
        fb = (box.reshape(2, 2) - shift) * f
        return canvas, pts, fb.reshape(-1)

    def geometry(
        self, image: np.ndarray, points: np.ndarray, face_box: Sequence[float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The augmented face canvas, its landmarks and the region boxes on it."""
        canvas, pts, fb = self.canvas(image, points, face_box)
        if self.augment is not None:
            corners = np.array([[fb[0], fb[1]], [fb[2], fb[1]], [fb[0], fb[3]], [fb[2], fb[3]]], np.float32)
            res = self.augment(image=canvas, keypoints=np.concatenate([pts, corners]))
            canvas = res["image"]
            kp = np.asarray(res["keypoints"], np.float32)[:, :2]
            pts, c = kp[: len(pts)], kp[len(pts) :]
            # A mirror reverses the orientation of the box corners: re-index the landmarks so
            # that left_eye stays the image-left eye whatever the augmentation did.
            e1, e2 = c[1] - c[0], c[2] - c[0]
            if e1[0] * e2[1] - e1[1] * e2[0] < 0:
                pts = pts[FLIP_PERMUTATION[len(pts)]]
            fb = np.array([*c.min(0), *c.max(0)], np.float32)
        h, w = canvas.shape[:2]
        return canvas, pts, region_boxes(pts, w, h, fb)

    def _needed(self) -> tuple[str, ...]:
        """Region boxes the cuts need: parts only when a part or ``rest`` is asked for."""
        return ("face",) if self._cuts == ["face"] else REGIONS[:5]

    def warp(
        self, image: np.ndarray, points: np.ndarray, face_box: Sequence[float] | None = None
    ) -> tuple[np.ndarray, tuple[float, float, bool] | None]:
        """The views as uint8 ``[V', S, S, 3]`` (face first when not asked for) by one
        ``cv2.warpAffine`` per view, and the photometric draw still to apply."""
        box = np.asarray(face_box if face_box is not None else face_box_from_points(points), np.float32)
        side = float(max(box[2] - box[0], box[3] - box[1], 2.0))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        full = side * (1 + 2 * self.margin)
        if full > 2 * self.face_px:
            # A big face: cut and shrink it with area interpolation first (a warp that
            # shrinks more than 2x would alias); the canvas is then the warps' source.
            image, points, fb = self.canvas(image, points, box)
            size = float(image.shape[0])
            to_canvas = np.eye(3)
        else:
            x0, y0 = cx - full / 2, cy - full / 2
            size = full
            to_canvas = np.array([[1.0, 0, -x0], [0, 1, -y0], [0, 0, 1]])
            points = np.asarray(points, np.float32) - (x0, y0)
            fb = (box.reshape(2, 2) - (x0, y0)).reshape(-1)
        photo = None
        if isinstance(self.augment, AffineAugment):
            aug, flipped, photo = self.augment.sample(size, size)
            corners = np.array([[fb[0], fb[1]], [fb[2], fb[1]], [fb[0], fb[3]], [fb[2], fb[3]]], np.float32)
            pts_h = np.concatenate([points, corners]) @ aug[:2, :2].T + aug[:2, 2]
            points, c = pts_h[: len(points)].astype(np.float32), pts_h[len(points) :]
            if flipped:  # keep left_eye the image-left eye
                points = points[FLIP_PERMUTATION[len(points)]]
            fb = np.array([*c.min(0), *c.max(0)], np.float32)
            to_canvas = aug @ to_canvas
        boxes = region_boxes(points, size, size, fb, names=self._needed())
        s = self.image_size
        out = np.empty((len(self._cuts), s, s, 3), np.uint8)
        for i, view in enumerate(self._cuts):
            x0, y0, x1, y1 = boxes["face" if view == "rest" else view]
            sx, sy = s / max(x1 - x0, 1e-3), s / max(y1 - y0, 1e-3)
            m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy], [0, 0, 1]]) @ to_canvas
            # Boxes and points are continuous coordinates (pixel i spans [i, i+1)); warpAffine
            # maps pixel indices: shift by half a pixel on both sides, as cv2.resize does.
            m = _TO_INDEX @ m @ _TO_CONTINUOUS
            cv2.warpAffine(image, m[:2], (s, s), dst=out[i], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=MEAN_PIXEL)
            if view == "rest":
                for part in PARTS:  # the parts' boxes, mapped into this view, take the mean
                    px0, py0, px1, py1 = boxes[part]
                    a0, a1 = int(math.floor((px0 - x0) * sx)), int(math.ceil((px1 - x0) * sx))
                    b0, b1 = int(math.floor((py0 - y0) * sy)), int(math.ceil((py1 - y0) * sy))
                    out[i, max(b0, 0) : max(b1, 0), max(a0, 0) : max(a1, 0)] = MEAN_PIXEL
        return out, photo

    def __call__(
        self, image: np.ndarray, points: np.ndarray, face_box: Sequence[float] | None = None
    ) -> dict[str, np.ndarray]:
        """Returns ``{"image": [3, S, S], "views": [V, 3, S, S]}``, float32, normalised."""
        warped = self.augment is None or isinstance(self.augment, AffineAugment)
        batch = self._warped(image, points, face_box) if warped else self._cut_canvas(image, points, face_box)
        if self.channels == 1:
            grey = batch.mean(-3, keepdims=True, dtype=np.float32)
            batch = np.rint(grey).astype(np.uint8) if self.wire == "uint8" else grey
        views = batch if len(self._cuts) == len(self.views) else batch[1:]
        return {"image": batch[self._face], "views": views}

    def _warped(self, image: np.ndarray, points: np.ndarray, face_box: Sequence[float] | None) -> np.ndarray:
        """The warp path (evaluation, :class:`AffineAugment`): views ``[V', 3, S, S]``, normalised."""
        crops, photo = self.warp(image, points, face_box)
        contrast, brightness = 1.0, 0.0
        if photo is not None:
            contrast, brightness, grey = photo
            if grey:
                g = crops @ np.array([0.299, 0.587, 0.114], np.float32)
                crops[...] = np.clip(g + 0.5, 0, 255).astype(np.uint8)[..., None]
        if self.wire == "uint8":
            if contrast != 1.0 or brightness != 0.0:  # the float path's arithmetic, rounded to pixels
                crops = np.clip(crops * np.float32(contrast) + np.float32(brightness) + 0.5, 0, 255).astype(np.uint8)
            return np.ascontiguousarray(crops.transpose(0, 3, 1, 2))
        # Channels first on uint8 (cheap), then one multiply-add to normalised float32, with
        # contrast and brightness folded in; clipping where brightness/contrast could leave
        # the pixel range, as albumentations does.
        planar = np.ascontiguousarray(crops.transpose(0, 3, 1, 2))
        batch = np.empty(planar.shape, np.float32)
        np.multiply(planar, _SCALE * contrast, out=batch, casting="unsafe")
        batch += _SHIFT + brightness * _SCALE
        if photo is not None and (contrast != 1.0 or brightness != 0.0):
            np.clip(batch, _SHIFT, _SHIFT + 255 * _SCALE, out=batch)  # the pixel range, normalised
        return batch

    def _cut_canvas(self, image: np.ndarray, points: np.ndarray, face_box: Sequence[float] | None) -> np.ndarray:
        """The albumentations path: augment the face canvas, then cut and normalise the views."""
        canvas, _, boxes = self.geometry(image, points, face_box)
        s = self.image_size
        crops = [_crop_resize(mask_parts(canvas, boxes, MEAN_PIXEL), boxes["face"], s, s) if view == "rest"
                 else _crop_resize(canvas, boxes[view], s, s) for view in self._cuts]
        if self.wire == "uint8":
            return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))
        batch = np.stack(crops).astype(np.float32)
        batch -= _MEAN255
        batch *= _INV_STD
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def normalize_batch(batch: dict) -> dict:
    """A batch whose ``views``/``image`` came as uint8 pixels (``wire: uint8``), normalised as
    :class:`FaceTransform` does (``x * scale + shift`` in float32), on whatever device it is;
    float batches pass through. LightningModules call it in ``on_after_batch_transfer``.

    Example:
        >>> import torch
        >>> out = normalize_batch({"views": torch.full((1, 1, 3, 2, 2), 124, dtype=torch.uint8)})
        >>> out["views"].dtype, round(float(out["views"][0, 0, 0, 0, 0]), 3)
        (torch.float32, 0.006)
    """
    import torch

    if not isinstance(batch, dict):
        return batch
    for key in ("views", "image"):
        x = batch.get(key)
        if x is not None and x.dtype == torch.uint8:
            scale, shift = _normalisation_on(x.device)
            batch[key] = x.float() * scale + shift
    return batch


@functools.lru_cache(maxsize=8)
def _normalisation_on(device):
    """``_SCALE`` and ``_SHIFT`` as tensors on ``device``, copied there once, not per batch."""
    import torch

    return torch.as_tensor(_SCALE, device=device), torch.as_tensor(_SHIFT, device=device)


def denormalize(views: np.ndarray) -> np.ndarray:
    """``[..., 3, H, W]`` normalised floats back to ``[..., H, W, 3]`` uint8, for pictures."""
    x = np.moveaxis(np.asarray(views, np.float32), -3, -1)
    x = x * np.array(IMAGENET_STD, np.float32) + np.array(IMAGENET_MEAN, np.float32)
    return (x.clip(0, 1) * 255).round().astype(np.uint8)
