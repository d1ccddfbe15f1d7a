"""Face regions from landmarks: ``face``, ``left_eye``, ``right_eye``, ``nose``, ``mouth``, ``rest``.

Works on the 68-point iBUG scheme (annotations) and the 5-point scheme (MTCNN, templates).
"Left" and "right" are image sides, as MTCNN reports them: ``left_eye`` is the eye on the image's
left (the subject's right eye). Boxes are ``(x0, y0, x1, y1)`` in pixels, sized by the
inter-ocular distance so they scale with the face, and clamped to the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Every view a data module can yield. ``rest`` is the face with the four parts masked out.
REGIONS: tuple[str, ...] = ("face", "left_eye", "right_eye", "nose", "mouth", "rest")
PARTS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth")
#: The view of horizontal-flip test-time augmentation: the mirrored face, made by the ensemble
#: from ``face`` (never yielded by the data).
FLIP_VIEW = "face_flip"

# Indices of the points each part is built from, per scheme. 68: iBUG order (jaw 0-16, brows
# 17-26, nose 27-35, eyes 36-41 / 42-47, mouth 48-67); points 36-41 are the image-left eye.
PART_POINTS: dict[int, dict[str, list[int]]] = {
    68: {
        "left_eye": list(range(36, 42)) + list(range(17, 22)),
        "right_eye": list(range(42, 48)) + list(range(22, 27)),
        "nose": list(range(27, 36)),
        "mouth": list(range(48, 68)),
    },
    5: {"left_eye": [0], "right_eye": [1], "nose": [2], "mouth": [3, 4]},
}

#: The permutation that keeps each index's meaning after a horizontal mirror of the points.
FLIP_PERMUTATION: dict[int, np.ndarray] = {
    5: np.array([1, 0, 2, 4, 3]),
    68: np.array(
        list(range(16, -1, -1))  # jaw
        + list(range(26, 16, -1))  # brows
        + [27, 28, 29, 30]  # nose bridge
        + [35, 34, 33, 32, 31]  # nose bottom
        + [45, 44, 43, 42, 47, 46]  # left eye <- right eye
        + [39, 38, 37, 36, 41, 40]  # right eye <- left eye
        + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer mouth
        + [64, 63, 62, 61, 60, 67, 66, 65]  # inner mouth
    ),
}


def five_points(points: np.ndarray) -> np.ndarray:
    """Reduce 68 iBUG points to the 5 MTCNN points (eye centres, nose tip, mouth corners).

    Example:
        >>> five_points(np.zeros((68, 2))).shape
        (5, 2)
    """
    points = np.asarray(points, dtype=np.float32)
    if len(points) == 5:
        return points
    if len(points) != 68:
        raise ValueError(f"expected 5 or 68 landmarks, got {len(points)}")
    return np.stack(
        [points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]]
    ).astype(np.float32)


def flip_points(points: np.ndarray, width: float) -> np.ndarray:
    """Mirror points horizontally in an image ``width`` wide, re-indexed so that index 0 of the
    5-point scheme (or 36-41 of the 68-point one) is still the image-left eye."""
    points = np.asarray(points, dtype=np.float32)
    out = points[FLIP_PERMUTATION[len(points)]].copy()
    out[:, 0] = width - out[:, 0]
    return out


def _clamp(box: np.ndarray, width: float, height: float) -> np.ndarray:
    # Plain floats: np.clip on two numbers costs ~10x more, and this runs per view per item.
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    # Keep at least 2 px so that a crop never comes out empty, even for points off the image.
    if x1 - x0 < 2:
        c = min(max((x0 + x1) / 2, 1), width - 1)
        x0, x1 = c - 1, c + 1
    if y1 - y0 < 2:
        c = min(max((y0 + y1) / 2, 1), height - 1)
        y0, y1 = c - 1, c + 1
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def _centred(cx: float, cy: float, w: float, h: float) -> np.ndarray:
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float32)


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])], dtype=np.float32)


def _bbox(points: np.ndarray, pad: float) -> np.ndarray:
    lo = points.min(0) - pad
    hi = points.max(0) + pad
    return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float32)


def face_box_from_points(points: np.ndarray) -> np.ndarray:
    """A face box ``(x0, y0, x1, y1)`` (unclamped) from 5 or 68 landmarks."""
    points = np.asarray(points, dtype=np.float32)
    p5 = five_points(points)
    eyes = (p5[0] + p5[1]) / 2
    mouth = (p5[3] + p5[4]) / 2
    iod = max(float(np.linalg.norm(p5[1] - p5[0])), 1.0)
    em = max(float(np.linalg.norm(mouth - eyes)), 1.0)
    side = max(2.2 * iod, 2.4 * em)
    c = (eyes + mouth) / 2
    box = _centred(float(c[0]), float(c[1] - 0.08 * side), side, side)
    if len(points) == 68:
        box = _union(box, _bbox(points, 0.05 * iod))
    return box


def region_boxes(
    points: np.ndarray,
    width: float,
    height: float,
    face_box: np.ndarray | None = None,
    names: tuple[str, ...] | None = None,
    clamp: bool = True,
) -> dict[str, np.ndarray]:
    """Boxes of ``face`` and the four parts, clamped to a ``width`` x ``height`` image.

    Args:
        points: ``[5, 2]`` or ``[68, 2]`` landmarks in pixels.
        width: image width.
        height: image height.
        face_box: ``(x0, y0, x1, y1)`` to use for ``face`` instead of one derived from the points.
        names: only these boxes (default: all five); ``("face",)`` skips the parts' work.
        clamp: clamp the boxes to the image (``False``: as the landmarks place them, which
            :func:`region_coverage` needs).

    Returns:
        name -> ``(x0, y0, x1, y1)`` float32; every box contains the (in-image) points of its part.

    Example:
        >>> pts = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=np.float32)
        >>> boxes = region_boxes(pts, 100, 100)
        >>> sorted(boxes), bool(boxes["left_eye"][2] < boxes["right_eye"][2])
        (['face', 'left_eye', 'mouth', 'nose', 'right_eye'], True)
    """
    points = np.asarray(points, dtype=np.float32)
    k = len(points)
    if k not in PART_POINTS:
        raise ValueError(f"expected 5 or 68 landmarks, got {k}")
    if names == ("face",):
        face = np.asarray(face_box, dtype=np.float32) if face_box is not None else face_box_from_points(points)
        return {"face": _clamp(face, width, height) if clamp else face}
    p5 = five_points(points)
    le, re, nose, ml, mr = p5
    iod = max(float(np.linalg.norm(re - le)), 1.0)
    eyes_mid = (le + re) / 2
    mouth_mid = (ml + mr) / 2
    mouth_w = float(np.linalg.norm(mr - ml))
    pad = 0.1 * iod
    boxes = {
        # Eyes with their brows: the brows carry much of anger, surprise and sadness.
        "left_eye": _centred(float(le[0]), float(le[1] - 0.15 * iod), 0.9 * iod, 0.8 * iod),
        "right_eye": _centred(float(re[0]), float(re[1] - 0.15 * iod), 0.9 * iod, 0.8 * iod),
        # Nose from the bridge between the eyes to just under the tip (wrinkles of disgust).
        "nose": np.array(
            [nose[0] - 0.4 * iod, eyes_mid[1], nose[0] + 0.4 * iod, nose[1] + 0.25 * iod], dtype=np.float32
        ),
        "mouth": _centred(float(mouth_mid[0]), float(mouth_mid[1]), mouth_w + 0.5 * iod, 0.8 * iod),
    }
    for part, idx in PART_POINTS[k].items():
        boxes[part] = _union(boxes[part], _bbox(points[idx], pad))
    boxes["face"] = np.asarray(face_box, dtype=np.float32) if face_box is not None else face_box_from_points(points)
    return {
        name: _clamp(box, width, height) if clamp else box
        for name, box in boxes.items()
        if names is None or name in names
    }


def region_coverage(
    points: np.ndarray, width: float, height: float, names: tuple[str, ...] = PARTS
) -> dict[str, float]:
    """The share of each region's box (as the landmarks place it) that lies inside the image.

    A part whose box is mostly outside a tightly cropped image cannot be cut: its view would be
    padding. The data module marks such views missing (``data.landmarks.min_inside``).

    Example:
        >>> pts = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=np.float32)
        >>> region_coverage(pts, 100, 100)["mouth"], region_coverage(pts, 100, 84)["mouth"]
        (1.0, 0.625)
    """
    boxes = region_boxes(points, width, height, names=tuple(names), clamp=False)
    out = {}
    for name, (x0, y0, x1, y1) in boxes.items():
        area = max(float(x1 - x0), 1e-6) * max(float(y1 - y0), 1e-6)
        inside = max(min(x1, width) - max(x0, 0.0), 0.0) * max(min(y1, height) - max(y0, 0.0), 0.0)
        out[name] = float(inside / area)
    return out


def parts_coverage(points: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """:func:`region_coverage` of the four :data:`PARTS` for many faces at once: ``points``
    ``[B, K, 2]`` (one scheme, K = 5 or 68), ``width`` and ``height`` ``[B]``; returns ``[B, 4]``.

    Example:
        >>> pts = np.array([[[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]], dtype=np.float32)
        >>> parts_coverage(pts, np.array([100]), np.array([84]))[0, 3].round(3)
        np.float32(0.625)
    """
    p = np.asarray(points, np.float32)
    k = p.shape[1]
    if k not in PART_POINTS:
        raise ValueError(f"expected 5 or 68 landmarks, got {k}")
    if k == 68:
        le, re, nose, ml, mr = p[:, 36:42].mean(1), p[:, 42:48].mean(1), p[:, 30], p[:, 48], p[:, 54]
    else:
        le, re, nose, ml, mr = (p[:, j] for j in range(5))
    iod = np.maximum(np.linalg.norm(re - le, axis=1), 1.0)
    eyes_y = (le[:, 1] + re[:, 1]) / 2
    mouth = (ml + mr) / 2
    mouth_w = np.linalg.norm(mr - ml, axis=1)

    def centred(cx, cy, w, h):
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)

    boxes = {
        "left_eye": centred(le[:, 0], le[:, 1] - 0.15 * iod, 0.9 * iod, 0.8 * iod),
        "right_eye": centred(re[:, 0], re[:, 1] - 0.15 * iod, 0.9 * iod, 0.8 * iod),
        "nose": np.stack([nose[:, 0] - 0.4 * iod, eyes_y, nose[:, 0] + 0.4 * iod, nose[:, 1] + 0.25 * iod], 1),
        "mouth": centred(mouth[:, 0], mouth[:, 1], mouth_w + 0.5 * iod, 0.8 * iod),
    }
    w = np.asarray(width, np.float32)
    h = np.asarray(height, np.float32)
    out = np.empty((len(p), len(PARTS)), np.float32)
    pad = (0.1 * iod)[:, None]
    for j, part in enumerate(PARTS):
        pts = p[:, PART_POINTS[k][part]]
        lo, hi = pts.min(1) - pad, pts.max(1) + pad
        b = boxes[part]
        x0, y0 = np.minimum(b[:, 0], lo[:, 0]), np.minimum(b[:, 1], lo[:, 1])
        x1, y1 = np.maximum(b[:, 2], hi[:, 0]), np.maximum(b[:, 3], hi[:, 1])
        area = np.maximum(x1 - x0, 1e-6) * np.maximum(y1 - y0, 1e-6)
        inside = (np.maximum(np.minimum(x1, w) - np.maximum(x0, 0.0), 0.0)
                  * np.maximum(np.minimum(y1, h) - np.maximum(y0, 0.0), 0.0))
        out[:, j] = inside / area
    return out


def mask_parts(image: np.ndarray, boxes: dict[str, np.ndarray], fill: tuple[int, int, int]) -> np.ndarray:
    """A copy of ``image`` with the four part boxes filled with ``fill``: the paper's "rest of
    the face" region."""
    out = image.copy()
    for part in PARTS:
        x0, y0, x1, y1 = boxes[part]
        out[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = fill
    return out


def check_views(views: Sequence[str]) -> list[str]:
    """``views`` as a list, after checking that they are known regions, at least one, none twice.

    The one check of view names: the data module and the ensemble both call it.
    """
    views = list(views)
    if not views:
        raise ValueError(f"views must name at least one region of {list(REGIONS)}")
    unknown = [v for v in views if v not in REGIONS]
    if unknown:
        raise ValueError(f"unknown view(s) {unknown}; choose from {list(REGIONS)}")
    if len(set(views)) != len(views):
        raise ValueError(f"views repeats a region: {views}")
    return views
