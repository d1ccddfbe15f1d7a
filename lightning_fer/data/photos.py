"""Photos and videos to predict on: every face MTCNN finds in them, as items of region views."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_fer.data.io import ImageReadError, load_image_checked, read_image
from lightning_fer.data.sources import IMAGE_EXTENSIONS
from lightning_fer.data.transforms import FaceTransform
from lightning_fer.data.video import VIDEO_EXTENSIONS, VideoOptions, is_video, scan_video

log = logging.getLogger(__name__)

#: Where ``predict`` on photos writes its rows unless told otherwise.
DEFAULT_OUTPUT = "runs/predict/predictions.csv"


@dataclass(frozen=True)
class PredictOptions:
    """What ``predict`` labels and where it writes: the data module's ``predict`` option group
    (``--data.predict.path=photos/``; ``None``: predict on the test split). The prediction
    writer (:class:`~lightning_fer.predict.FacePredictionWriter`) is built from it.

    Args:
        path: an image, a video, or a folder of them: every face MTCNN finds there is labelled
            (tracked in videos).
        output: where a row per face goes (``.csv`` or ``.json``).
        annotate_dir: also write copies of the photos and videos with boxes and labels there.
        min_face_prob: MTCNN probability a face needs to count.
        video: how videos under ``path`` are read and their faces followed.
        runtime: ``auto`` runs the model through ONNX Runtime where that is faster than eager
            PyTorch on this CPU (measured at the start, said in a log line; the exported model
            is cached beside the checkpoint), ``onnx`` always, ``eager`` never.
    """

    path: str
    output: str = DEFAULT_OUTPUT
    annotate_dir: str | None = None
    min_face_prob: float = 0.9
    video: VideoOptions = VideoOptions()
    runtime: Literal["auto", "eager", "onnx"] = "auto"

    def __post_init__(self) -> None:
        if self.runtime not in ("auto", "eager", "onnx"):
            raise ValueError(f"predict.runtime must be auto, eager or onnx, got {self.runtime!r}")
        if not self.output.endswith((".csv", ".json")):
            raise ValueError(f"predict.output {self.output!r} must end in .csv or .json")
        if not 0.0 <= self.min_face_prob <= 1.0:
            raise ValueError(f"predict.min_face_prob must be in [0, 1], got {self.min_face_prob}")

    @classmethod
    def of(cls, value) -> PredictOptions | None:
        """Options from a mapping (a checkpoint's saved hyperparameters) or a parsed namespace."""
        if value is None or isinstance(value, cls):
            return value
        d = dict(value) if isinstance(value, dict) else {f: getattr(value, f) for f in cls.__dataclass_fields__}
        video = d.get("video")
        if video is not None and not isinstance(video, VideoOptions):
            d["video"] = VideoOptions(**(dict(video) if isinstance(video, dict) else vars(video)))
        return cls(**d)


@dataclass
class Face:
    """One face found in a photo, or in a video frame (``frame``, ``time`` in seconds, ``track``;
    the pixels around it kept in ``crop``, whose top-left corner is at ``offset``)."""

    file: str
    face: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    points: np.ndarray  # [5, 2]
    prob: float
    frame: int | None = None
    time: float | None = None
    track: int | None = None
    crop: np.ndarray | None = None
    offset: tuple[float, float] = (0.0, 0.0)


def video_face(image: np.ndarray, frame: int, time: float, points, box, prob: float, track: int, number: int,
               file: str = "") -> Face:
    """A face of a video frame, keeping only the pixels around it (its box and one side more on
    each side, more than the views' margin) so that long videos do not fill memory."""
    h, w = image.shape[:2]
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    x0, y0 = int(max(0, box[0] - side)), int(max(0, box[1] - side))
    x1, y1 = int(min(w, box[2] + side + 1)), int(min(h, box[3] + side + 1))
    return Face(file, number, tuple(float(v) for v in box), np.asarray(points, np.float32), prob, frame, time, track,
                np.ascontiguousarray(image[y0:y1, x0:x1]), (float(x0), float(y0)))


@dataclass
class PhotoScan:
    """The faces found under a path, and what could not be used (reported, never dropped)."""

    faces: list[Face] = field(default_factory=list)
    problems: list[tuple] = field(default_factory=list)  # (file, reason) or (file, reason, {frame, time})


def list_photos(path: str | os.PathLike) -> list[Path]:
    """An image or video file, or every image and video file under a folder (sorted)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    raise FileNotFoundError(f"predict_path {p} is neither an image or video file nor a folder")


class WholeImage:
    """A stand-in for the face detector where the pictures are faces already (``face_box:
    image``: CK+48, FER2013 crops, faces cut by another detector): the whole image is the face
    box, with the 5 points of the template (:data:`~lightning_fer.data.detection.TEMPLATE_5`)."""

    @staticmethod
    def _face(image: np.ndarray) -> list[tuple]:
        from lightning_fer.data.detection import TEMPLATE_5

        h, w = image.shape[:2]
        return [(TEMPLATE_5 * np.array([w, h], np.float32), np.array([0.0, 0.0, float(w), float(h)], np.float32), 1.0)]

    def detect_all(self, image: np.ndarray, min_prob: float = 0.0) -> list[tuple]:
        return self._face(image)

    def detect_frames(self, frames: list[np.ndarray], min_prob: float = 0.0) -> list[list[tuple]]:
        return [self._face(f) for f in frames]


def scan_photos(path: str | os.PathLike, min_prob: float = 0.9, device: str | None = None,
                video: VideoOptions = VideoOptions(), whole_image: bool = False) -> PhotoScan:  # noqa: B008
    """Find every face in every photo, and in every (looked-at) frame of every video, under
    ``path`` with MTCNN; faces in videos are followed as tracks. ``whole_image``: every photo
    and frame is one face, the whole picture (:class:`WholeImage`), and MTCNN is not run."""
    from lightning_fer.data.detection import FaceDetector, LandmarkSettings

    detector = WholeImage() if whole_image else FaceDetector(LandmarkSettings(), device)
    if whole_image:
        log.info("face_box=image: every photo and video frame under %s is labelled as one face (no MTCNN)", path)
    scan = PhotoScan()
    for f in list_photos(path):
        if is_video(f):
            scan_video(f, detector, video, min_prob, lambda *a, f=f: video_face(*a, file=str(f)), scan)
            continue
        try:
            image = load_image_checked(str(f))
        except ImageReadError as err:
            scan.problems.append((str(f), str(err).split(": ", 1)[-1]))
            continue
        faces = detector.detect_all(image, min_prob)
        if not faces:
            scan.problems.append((str(f), f"no face found (MTCNN, probability >= {min_prob})"))
        for i, (pts, box, prob) in enumerate(faces):
            scan.faces.append(Face(str(f), i, tuple(float(v) for v in box), pts, prob))
    log.info("%d face(s) in %s; %d file(s) without a usable face", len(scan.faces), path, len(scan.problems))
    return scan


class PhotoFacesDataset(Dataset):
    """Items ``{"image", "views", "label" (-1), "index"}`` for the faces of a :class:`PhotoScan`."""

    def __init__(self, scan: PhotoScan, transform: FaceTransform) -> None:
        self.scan = scan
        self.transform = transform

    def __len__(self) -> int:
        return len(self.scan.faces)

    def __getitem__(self, i: int) -> dict:
        face = self.scan.faces[i]
        if face.crop is None:
            out = self.transform(read_image(face.file), face.points, face.box)
        else:  # a video face: its crop, with the points and box moved into it
            dx, dy = face.offset
            box = (face.box[0] - dx, face.box[1] - dy, face.box[2] - dx, face.box[3] - dy)
            out = self.transform(face.crop, face.points - np.float32([dx, dy]), box)
        return {"image": torch.from_numpy(out["image"]), "views": torch.from_numpy(out["views"]), "label": -1, "index": i}


