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

from lightning_fer.data.io import MAX_PHOTO_SIDE, ImageReadError, read_image, read_photo
from lightning_fer.data.sources import IMAGE_EXTENSIONS
from lightning_fer.data.transforms import FaceTransform
from lightning_fer.predict.detection import make_detector
from lightning_fer.predict.video import VIDEO_EXTENSIONS, VideoOptions, is_video, scan_video

log = logging.getLogger(__name__)

#: Where ``predict`` on photos writes its rows unless told otherwise.
DEFAULT_OUTPUT = "runs/predict/predictions.csv"


@dataclass(frozen=True)
class PredictOptions:
    """What ``predict`` labels and where it writes: the data module's ``predict`` option group
    (``--data.predict.path=photos/``; ``None``: predict on the test split). The prediction
    writer (:class:`~lightning_fer.predict.writers.FacePredictionWriter`) is built from it.

    Args:
        path: an image, a video, or a folder of them: every face MTCNN finds there is labelled
            (tracked in videos).
        output: where a row per face goes (``.csv`` or ``.json``).
        annotate_dir: also write copies of the photos and videos with boxes and labels there.
        min_face_prob: MTCNN probability a face needs to count.
        video: how videos under ``path`` are read and their faces followed.
        runtime: ``auto`` runs the model through ONNX Runtime where that is faster than eager
            PyTorch on this CPU (measured at the start, said in a log line; the exported model
            is cached beside the checkpoint), as int8 where a shipped model's int8 version passed
            its accuracy check and is faster still; ``onnx`` always (float32), ``int8`` the
            shipped int8 version, ``eager`` never.
    """

    path: str
    output: str = DEFAULT_OUTPUT
    annotate_dir: str | None = None
    min_face_prob: float = 0.9
    video: VideoOptions = VideoOptions()
    runtime: Literal["auto", "eager", "onnx", "int8"] = "auto"

    def __post_init__(self) -> None:
        from lightning_fer.options import OptionError

        if self.runtime not in ("auto", "eager", "onnx", "int8"):
            raise OptionError(f"--data.predict.runtime {self.runtime!r}: must be auto, eager, onnx or int8")
        if not self.output.endswith((".csv", ".json")):
            raise OptionError(f"--data.predict.output {self.output!r}: must end in .csv or .json")
        if not 0.0 <= self.min_face_prob <= 1.0:
            raise OptionError(f"--data.predict.min_face_prob {self.min_face_prob}: must be in [0, 1]")

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
    """One face found in a photo, or in a video frame (``frame``, ``time`` in seconds, ``track``).
    ``box`` and ``points`` are in pixels of the upright original picture; the pixels around the
    face are kept in ``crop``, where a point ``xy`` of the original is at ``xy * scale - offset``
    (``scale`` < 1 where a large photo was shrunk before detection)."""

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
    scale: float = 1.0
    searched: bool | None = None  # a video face: found by the detector on its frame (else carried by optical flow)

    def in_crop(self) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The points and the box in the crop's pixels."""
        dx, dy = self.offset
        s = self.scale
        box = (self.box[0] * s - dx, self.box[1] * s - dy, self.box[2] * s - dx, self.box[3] * s - dy)
        return self.points * np.float32(s) - np.float32([dx, dy]), box


def face_of(image: np.ndarray, points, box, prob: float, number: int, file: str = "", scale: float = 1.0,
            frame: int | None = None, time: float | None = None, track: int | None = None) -> Face:
    """A face found at ``box`` / ``points`` (pixels of ``image``, which is the original shrunk by
    ``scale``), keeping only the pixels around it (its box and one side more on each side, more
    than the views' margin) so that long videos and large folders do not fill memory."""
    h, w = image.shape[:2]
    box = np.asarray(box, np.float64)
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    x0, y0 = int(max(0, box[0] - side)), int(max(0, box[1] - side))
    x1, y1 = int(min(w, box[2] + side + 1)), int(min(h, box[3] + side + 1))
    return Face(file, number, tuple(float(v) / scale for v in box), np.asarray(points, np.float32) / np.float32(scale),
                float(prob), frame, time, track, np.ascontiguousarray(image[y0:y1, x0:x1]), (float(x0), float(y0)),
                float(scale))


def video_face(image: np.ndarray, frame: int, time: float, points, box, prob: float, track: int, number: int,
               file: str = "") -> Face:
    """A face of a video frame (see :func:`face_of`)."""
    return face_of(image, points, box, prob, number, file, 1.0, frame, time, track)


#: Seconds between progress lines off a terminal (a tqdm bar on one).
PROGRESS_EVERY = 15.0

#: The kinds of input that gave no face: counted apart in the summary line.
NO_FACE, UNREADABLE = "no_face", "unreadable"


@dataclass
class PhotoScan:
    """The faces found in the inputs, and a row for each input (or video frame) without one:
    reported, never dropped. ``inputs`` counts files and in-memory images; ``without_face`` the
    readable ones with no face at all; ``unreadable`` those that could not be read."""

    faces: list[Face] = field(default_factory=list)
    problems: list[tuple] = field(default_factory=list)  # (file, reason, {frame, time}, kind)
    inputs: int = 0
    without_face: int = 0
    unreadable: int = 0
    root: str | None = None

    def problem(self, file: str, reason: str, kind: str = UNREADABLE, **where) -> None:
        self.problems.append((str(file), reason, where, kind))

    def summary(self, output: str | None = None) -> str:
        """The one line ``predict`` ends with."""
        where = f"; rows in {output}" if output else ""
        return (f"predict: {self.inputs} input(s), {len(self.faces)} face(s), {self.without_face} input(s) without a "
                f"face, {self.unreadable} unreadable{where}")


class PredictInputError(FileNotFoundError):
    """A predict path that does not exist: a user error, said in one line."""


def list_photos(path: str | os.PathLike) -> list[Path]:
    """An image or video file, or every image and video file under a folder (sorted)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
    raise PredictInputError(f"--data.predict.path {p}: no such file or folder; give a photo, a video or a folder of them")


def scan_photos(path: str | os.PathLike, min_prob: float = 0.9, device: str | None = None,
                video: VideoOptions = VideoOptions(), whole_image: bool = False, detector=None,  # noqa: B008
                max_side: int | None = MAX_PHOTO_SIDE) -> PhotoScan:
    """Find every face in every photo, and in every (looked-at) frame of every video, under
    ``path`` with MTCNN; faces in videos are followed as tracks. ``whole_image``: every photo
    and frame is one face, the whole picture (:class:`~lightning_fer.predict.detection.WholeImage`), and MTCNN is not run. An
    empty folder gives one row that says so."""
    files = list_photos(path)
    scan = scan_inputs(files, min_prob, device, video, whole_image, detector, max_side)
    scan.root = str(Path(path).expanduser()) if Path(path).expanduser().is_dir() else None
    if not files:
        scan.problem(str(path), f"no image or video files in this folder (looked for {', '.join(IMAGE_EXTENSIONS)}, "
                                f"{', '.join(VIDEO_EXTENSIONS)})", UNREADABLE)
    log.info("%d face(s) in %s; %d file(s) without a usable face", len(scan.faces), path,
             scan.without_face + scan.unreadable)
    return scan


def input_name(item, i: int) -> str:
    """How an input is named in rows: its path, or ``<image i>`` for a PIL image or an array."""
    return str(item) if isinstance(item, (str, os.PathLike)) else f"<image {i}>"


#: Photos read and detected together: those of one size in this many go to MTCNN in one call.
PHOTO_BATCH = 16


def scan_inputs(items, min_prob: float = 0.9, device: str | None = None, video: VideoOptions = VideoOptions(),  # noqa: B008
                whole_image: bool = False, detector=None, max_side: int | None = MAX_PHOTO_SIDE) -> PhotoScan:
    """Faces in each of ``items`` (paths of photos or videos, PIL images, RGB uint8 arrays), in
    order, with a progress bar over them (a log line every 15 s off a terminal). Photos are read
    :data:`PHOTO_BATCH` at a time and those of one size are detected in one MTCNN call."""
    from lightning_fer.progress import Progress

    detector = detector or make_detector(whole_image, device)
    if whole_image:
        log.info("face_box=image: every photo and video frame is labelled as one face (no MTCNN)")
    scan = PhotoScan()
    pending: list[tuple[str, np.ndarray, float]] = []

    def detect_pending() -> None:
        by_size: dict[tuple, list[int]] = {}
        for k, (_, image, _) in enumerate(pending):
            by_size.setdefault(image.shape, []).append(k)
        found: dict[int, list] = {}
        for ks in by_size.values():
            found.update(zip(ks, detector.detect_frames([pending[k][1] for k in ks], min_prob)))
        for k, (name, image, scale) in enumerate(pending):  # in input order
            if not found[k]:
                scan.problem(name, f"no face found (MTCNN, probability >= {min_prob})", NO_FACE)
                scan.without_face += 1
            for n, (pts, box, prob) in enumerate(found[k]):
                scan.faces.append(face_of(image, pts, box, prob, n, name, scale))
        pending.clear()

    with Progress(len(items), "finding faces", unit="input", every=PROGRESS_EVERY) as bar:
        for i, item in enumerate(items):
            scan.inputs += 1
            name = input_name(item, i)
            if isinstance(item, (str, os.PathLike)) and is_video(item):
                detect_pending()  # rows stay in input order
                before, problems = len(scan.faces), len(scan.problems)
                scan_video(Path(item), detector, video, min_prob, lambda *a, f=name: video_face(*a, file=f), scan)
                if len(scan.faces) == before:
                    unread = any(p[3] == UNREADABLE for p in scan.problems[problems:])
                    scan.unreadable += unread
                    scan.without_face += not unread
            else:
                try:
                    pending.append((name, *read_photo(item, max_side, name)))
                except ImageReadError as err:
                    scan.problem(name, str(err).split(": ", 1)[-1], UNREADABLE)
                    scan.unreadable += 1
                if len(pending) >= PHOTO_BATCH:
                    detect_pending()
            bar.update(1)
        detect_pending()
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
        else:  # the pixels kept around the face, with the points and box moved into them
            points, box = face.in_crop()
            out = self.transform(face.crop, points, box)
        return {"image": torch.from_numpy(out["image"]), "views": torch.from_numpy(out["views"]), "label": -1, "index": i}


