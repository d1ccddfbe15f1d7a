"""Where each face is: its landmarks and face box as ``face_box`` says, and which views can be
located on it (the ``view_mask`` of every batch)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from lightning_fer.data.detection import template_points
from lightning_fer.data.landmarks import LOCATED_KINDS, IndexEntry
from lightning_fer.data.regions import PARTS, face_box_from_points, region_coverage
from lightning_fer.data.sources import Record

FaceBox = Literal["auto", "image", "landmarks", "annotation"]


def face_geometry(records: list[Record], entries: dict[str, IndexEntry], face_box: FaceBox = "auto"):
    """Landmarks ``[K, 2]`` and the face box ``(x0, y0, x1, y1)`` (NaN: derived from the
    landmarks by the transform) of every record, as ``face_box`` says (see :class:`~lightning_fer.data.FERDataModule`)."""
    points: list[np.ndarray] = []
    boxes = np.full((len(records), 4), np.nan, np.float32)
    unboxed = []
    for i, r in enumerate(records):
        e = entries[r.key]
        if not e.ok:
            points.append(np.zeros((5, 2), np.float32))
            continue
        if e.kind == "annotation":
            points.append(r.landmarks)
        elif e.points is not None:
            points.append(e.points)
        else:  # pragma: no cover - every ok entry has points or an annotation
            points.append(template_points(e.width, e.height))
        annotated = None
        if r.box is not None:
            x, y, w, h = r.box
            annotated = (x, y, x + w, y + h)
        if face_box == "image":
            boxes[i] = (0, 0, e.width, e.height)
        elif face_box == "annotation":
            if annotated is None:
                unboxed.append(r)
            else:
                boxes[i] = annotated
        elif face_box == "landmarks":
            boxes[i] = e.box if e.kind in ("mtcnn", "dlib") and e.box is not None else face_box_from_points(points[-1])
        elif annotated is not None:
            boxes[i] = annotated
        elif e.kind in ("mtcnn", "dlib") and e.box is not None:
            boxes[i] = e.box
        elif e.kind in ("template", "template_fallback", "dlib"):
            boxes[i] = (0, 0, e.width, e.height)  # pre-aligned crops (Dlib on the whole image): the face is the image
    if unboxed:
        names = "\n  ".join(r.where or r.path for r in unboxed[:20])
        raise ValueError(
            f"face_box='annotation', but {len(unboxed)} record(s) have no annotated face box, e.g.\n  {names}\n"
            "give face_x, face_y, face_width, face_height for them, or set data.face_box to auto or image"
        )
    return points, boxes


def view_masks(
    records: list[Record], entries: dict[str, IndexEntry], points: list[np.ndarray], views: list[str],
    min_view_inside: float = 0.5,
) -> np.ndarray:
    """``[N, V]``: which of ``views`` can be located on each record's face.

    ``face`` always can (it is a box or the image). A part can where the landmarks locate the
    parts (:data:`~lightning_fer.data.landmarks.LOCATED_KINDS`) and at least
    ``min_view_inside`` of its box lies inside the image; ``rest`` (the face with the parts
    masked) where the landmarks locate the parts.
    """
    masks = np.ones((len(records), len(views)), bool)
    parts = [v for v in views if v in PARTS]
    if parts == [] and "rest" not in views:
        return masks
    col = {v: j for j, v in enumerate(views)}
    for i, r in enumerate(records):
        e = entries[r.key]
        if not e.ok:
            continue
        located = e.kind in LOCATED_KINDS
        if "rest" in col:
            masks[i, col["rest"]] = located
        if not parts:
            continue
        if not located:
            masks[i, [col[v] for v in parts]] = False
            continue
        inside = region_coverage(points[i], e.width, e.height, tuple(parts))
        for v in parts:
            masks[i, col[v]] = inside[v] >= min_view_inside
    return masks
