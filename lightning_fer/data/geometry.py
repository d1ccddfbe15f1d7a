"""Where each face is: its landmarks and face box as ``face_box`` says, and which views can be
located on it (the ``view_mask`` of every batch). Computed on the record and index columns at
once: no Python work per record at ``setup()``."""

from __future__ import annotations

from typing import Literal

import numpy as np

from lightning_fer.data.columns import Rows
from lightning_fer.data.detection import template_points
from lightning_fer.data.landmarks import KINDS, LOCATED_KINDS, IndexTable
from lightning_fer.data.records import RecordTable
from lightning_fer.data.regions import PARTS, face_box_from_points

FaceBox = Literal["auto", "image", "landmarks", "annotation"]


class FacePoints(Rows):
    """Each record's landmarks ``[K, 2]``, read when asked for: the annotation where the index
    says so, else the index's points (MTCNN, Dlib, template); ``[5, 2]`` zeros for an unusable
    record. Holds no per-record objects: loader workers share the columns' pages."""

    def __init__(self, records: RecordTable, index: IndexTable) -> None:
        self.records, self.index = records, index
        self._annotation = KINDS.index("annotation")

    def __len__(self) -> int:
        return len(self.index)

    def row(self, i: int) -> np.ndarray:
        ix = self.index
        if not ix.ok[i]:
            return np.zeros((5, 2), np.float32)
        if ix.kind[i] == self._annotation:
            return self.records.landmarks_of(i)
        n = int(ix.n_points[i])
        return np.array(ix.points[i, :n]) if n else template_points(int(ix.width[i]), int(ix.height[i]))


def face_geometry(records: RecordTable, index: IndexTable, face_box: FaceBox = "auto") -> tuple[FacePoints, np.ndarray]:
    """Landmarks and the face box ``(x0, y0, x1, y1)`` (NaN: derived from the landmarks by the
    transform) of every record, as ``face_box`` says (see :class:`~lightning_fer.data.FERDataModule`)."""
    n = len(records)
    ok = np.asarray(index.ok)
    kind = np.asarray(index.kind)
    image = np.stack([np.zeros(n), np.zeros(n), index.width, index.height], 1).astype(np.float32)
    xywh = np.asarray(records.boxes, np.float32)
    annotated = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    has_ann = ~np.isnan(annotated[:, 0])
    detected = np.isin(kind, [KINDS.index("mtcnn"), KINDS.index("dlib")]) & ~np.isnan(np.asarray(index.box)[:, 0])
    boxes = np.full((n, 4), np.nan, np.float32)
    points = FacePoints(records, index)
    if face_box == "image":
        boxes[ok] = image[ok]
    elif face_box == "annotation":
        unboxed = np.flatnonzero(ok & ~has_ann)
        if len(unboxed):
            names = "\n  ".join(records.where[i] or records.path(i) for i in unboxed[:20])
            raise ValueError(
                f"face_box='annotation', but {len(unboxed)} record(s) have no annotated face box, e.g.\n  {names}\n"
                "give face_x, face_y, face_width, face_height for them, or set data.face_box to auto or image"
            )
        boxes[ok] = annotated[ok]
    elif face_box == "landmarks":
        use = ok & detected
        boxes[use] = index.box[use]
        for i in np.flatnonzero(ok & ~detected).tolist():
            boxes[i] = face_box_from_points(points[i])
    else:
        whole = np.isin(kind, [KINDS.index(k) for k in ("template", "template_fallback", "dlib", "dlib_whole")])
        for sel, values in ((ok & whole, image), (ok & detected, index.box), (ok & has_ann, annotated)):
            boxes[sel] = np.asarray(values)[sel]  # later rules win: annotated, else detected, else the image
    return points, boxes


def view_masks(index: IndexTable, views: list[str], min_view_inside: float = 0.5) -> np.ndarray:
    """``[N, V]``: which of ``views`` can be located on each record's face.

    ``face`` always can (it is a box or the image). A part can where the landmarks locate the
    parts (:data:`~lightning_fer.data.landmarks.LOCATED_KINDS`) and at least
    ``min_view_inside`` of its box lies inside the image (the index's ``inside`` column);
    ``rest`` (the face with the parts masked) where the landmarks locate the parts.
    """
    n = len(index)
    masks = np.ones((n, len(views)), bool)
    ok = np.asarray(index.ok)
    located = index.kinds(LOCATED_KINDS) & ok
    inside = np.asarray(index.inside, np.float32)
    for j, v in enumerate(views):
        if v == "rest":
            masks[:, j] = located | ~ok
        elif v in PARTS:
            with np.errstate(invalid="ignore"):
                masks[:, j] = (located & (inside[:, PARTS.index(v)] >= min_view_inside)) | ~ok
    return masks


def say_face_box(index: IndexTable, face_box: str, mode: str, image_size: int) -> None:
    """One log line: what the ``face`` view shows in this run and how to change it; a warning where
    whole pictures over 3x the model's input are taken as faces (uncropped photos, most likely)."""
    import logging

    log = logging.getLogger("lightning_fer.data.datamodule")
    if face_box == "image" or mode == "template":
        widths = np.asarray(index.width)[np.asarray(index.ok)]
        median = int(np.median(widths)) if len(widths) else 0
        log.info("face box: the whole picture (face_box %s, landmarks %s); for photos that are not face crops set "
                 "--data.face_box auto --data.landmarks mtcnn", face_box, mode)
        if median > 3 * image_size:
            log.warning("the pictures are %d px wide (median), over 3x the model's %d px input, and each whole "
                        "picture is taken as the face: if they are not face crops, set --data.face_box auto "
                        "--data.landmarks mtcnn to find the faces", median, image_size)
        return
    found = "the annotated box, else the detected one" if mode in ("auto", "annotation") else "the detected box"
    log.info("face box: %s (face_box %s, landmarks %s); --data.face_box image takes whole pictures as faces",
             found, face_box, mode)
