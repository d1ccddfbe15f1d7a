"""Photos to predict on: every face MTCNN finds in them, as items of region views."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_fer.data.io import ImageReadError, load_image_checked, read_image
from lightning_fer.data.sources import IMAGE_EXTENSIONS
from lightning_fer.data.transforms import FaceTransform

log = logging.getLogger(__name__)

#: Where ``predict`` on photos writes its rows unless told otherwise.
DEFAULT_OUTPUT = "runs/predict/predictions.csv"


@dataclass(frozen=True)
class PhotoOptions:
    """What ``predict`` on photos reads and writes (the data module's ``predict_*`` options).

    Args:
        path: an image or a folder of photos.
        output: where a row per face goes (``.csv`` or ``.json``).
        annotate_dir: also write copies of the photos with boxes and labels there.
        min_prob: MTCNN probability a face needs to count.
    """

    path: str
    output: str = DEFAULT_OUTPUT
    annotate_dir: str | None = None
    min_prob: float = 0.9


@dataclass
class Face:
    """One face found in a photo."""

    file: str
    face: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    points: np.ndarray  # [5, 2]
    prob: float


@dataclass
class PhotoScan:
    """The faces found under a path, and what could not be used (reported, never dropped)."""

    faces: list[Face] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def list_photos(path: str | os.PathLike) -> list[Path]:
    """An image file, or every image file under a folder (sorted)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    raise FileNotFoundError(f"predict_path {p} is neither an image file nor a folder")


def scan_photos(path: str | os.PathLike, min_prob: float = 0.9, device: str | None = None) -> PhotoScan:
    """Find every face in every photo under ``path`` with MTCNN."""
    from lightning_fer.data.detection import FaceDetector, LandmarkSettings

    detector = FaceDetector(LandmarkSettings(), device)
    scan = PhotoScan()
    for f in list_photos(path):
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
        out = self.transform(read_image(face.file), face.points, face.box)
        return {"image": torch.from_numpy(out["image"]), "views": torch.from_numpy(out["views"]), "label": -1, "index": i}


