"""From a decoded image and its landmarks to normalised region views.

The face is first cut out with a margin and brought to a working size (so that a 3000 px
AffectNet photo costs as little as a 48 px FER2013 crop), then augmented with albumentations
(geometry applied to the landmarks too), then cut into the requested regions, each resized to
``image_size`` and normalised with ImageNet statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np

from lightning_fer.data.regions import FLIP_PERMUTATION, REGIONS, face_box_from_points, mask_parts, region_boxes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The ImageNet mean as a pixel: padding and masked parts take it, so they normalise to zero.
MEAN_PIXEL = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)


def check_views(views: Sequence[str]) -> list[str]:
    views = list(views)
    if not views:
        raise ValueError(f"views must name at least one region of {list(REGIONS)}")
    unknown = [v for v in views if v not in REGIONS]
    if unknown:
        raise ValueError(f"unknown view(s) {unknown}; choose from {list(REGIONS)}")
    if len(set(views)) != len(views):
        raise ValueError(f"views repeats a region: {views}")
    return views


def train_augmentation(
    hflip: float = 0.5,
    rotate: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    translate: float = 0.05,
    brightness_contrast: float = 0.2,
    grayscale: float = 0.1,
) -> A.Compose:
    """The default training augmentation; geometry moves the keypoints too."""
    return A.Compose(
        [
            A.HorizontalFlip(p=hflip),
            A.Affine(
                scale=scale,
                rotate=(-rotate, rotate),
                translate_percent=(-translate, translate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=MEAN_PIXEL,
                p=0.8,
            ),
            A.RandomBrightnessContrast(brightness_contrast, brightness_contrast, p=0.5),
            A.ToGray(num_output_channels=3, p=grayscale),
        ],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )


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
        augment: an albumentations ``Compose`` with ``KeypointParams(format="xy")`` applied to
            the face canvas, or ``None`` (evaluation).
        margin: context kept around the face box on each side, as a fraction of its side.

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
    ) -> None:
        self.views = check_views(views)
        # The face is always cut too: batches carry it as "image" beside the views.
        self._cuts = self.views if "face" in self.views else ["face", *self.views]
        self._face = self._cuts.index("face")
        self.image_size = int(image_size)
        self.augment = augment
        self.margin = margin
        # Parts are small: keep the canvas sharper when they are asked for.
        self.face_px = self.image_size * (1 if self.views == ["face"] else 2)
        self._mean = np.array(IMAGENET_MEAN, np.float32) * 255
        self._inv_std = 1.0 / (np.array(IMAGENET_STD, np.float32) * 255)

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

    def __call__(
        self, image: np.ndarray, points: np.ndarray, face_box: Sequence[float] | None = None
    ) -> dict[str, np.ndarray]:
        """Returns ``{"image": [3, S, S], "views": [V, 3, S, S]}``, float32, normalised."""
        canvas, pts, boxes = self.geometry(image, points, face_box)
        s = self.image_size
        crops = []
        for view in self._cuts:
            if view == "rest":
                crops.append(_crop_resize(mask_parts(canvas, boxes, MEAN_PIXEL), boxes["face"], s, s))
            else:
                crops.append(_crop_resize(canvas, boxes[view], s, s))
        batch = np.stack(crops).astype(np.float32)
        batch -= self._mean
        batch *= self._inv_std
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        views = batch if len(self._cuts) == len(self.views) else batch[1:]
        return {"image": batch[self._face], "views": views}


def denormalize(views: np.ndarray) -> np.ndarray:
    """``[..., 3, H, W]`` normalised floats back to ``[..., H, W, 3]`` uint8, for pictures."""
    x = np.moveaxis(np.asarray(views, np.float32), -3, -1)
    x = x * np.array(IMAGENET_STD, np.float32) + np.array(IMAGENET_MEAN, np.float32)
    return (x.clip(0, 1) * 255).round().astype(np.uint8)
