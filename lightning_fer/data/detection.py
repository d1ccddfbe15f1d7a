"""Faces and their five landmarks: the settings, MTCNN (facenet-pytorch) batched over images, and the template for pre-aligned crops."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)


#: Bumped when what the landmark cache stores changes: older caches are rebuilt.
CACHE_VERSION = 1

#: Where the 5 MTCNN points sit, as fractions of width and height, in a tightly cropped and
#: aligned face such as FER2013's 48x48 crops: the mean of the points MTCNN found on 2,000
#: FER2013 training images (see ``benchmarks/landmark_template.py``).
TEMPLATE_5 = np.array(
    [[0.298, 0.387], [0.693, 0.379], [0.494, 0.614], [0.335, 0.819], [0.664, 0.815]], dtype=np.float32
)


LandmarkMode = Literal["auto", "annotation", "mtcnn", "template"]


NoFacePolicy = Literal["template", "skip", "error"]


@dataclass(frozen=True)
class LandmarkSettings:
    """How landmarks are found.

    Args:
        mode: ``auto`` takes the annotation where a record has one and runs MTCNN otherwise;
            ``annotation`` requires annotations; ``mtcnn`` detects on every image; ``template``
            places the 5 points of :data:`TEMPLATE_5` on every (pre-aligned) crop.
        no_face: what happens where MTCNN finds no face: ``template`` falls back to the template,
            ``skip`` leaves the image out (counted and listed), ``error`` stops.
        min_face_size: MTCNN's smallest face in pixels.
        thresholds: MTCNN's three stage thresholds.
    """

    mode: LandmarkMode = "auto"
    no_face: NoFacePolicy = "template"
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)

    def fingerprint(self) -> dict:
        d = asdict(self)
        d["thresholds"] = list(self.thresholds)
        d["version"] = CACHE_VERSION
        return d


def template_points(width: int, height: int) -> np.ndarray:
    """The 5 template points scaled to a ``width`` x ``height`` crop."""
    return TEMPLATE_5 * np.array([width, height], dtype=np.float32)


class FaceDetector:
    """facenet-pytorch's MTCNN, batched over images of one size, choosing one face per image.

    ``mtcnn(batch)`` with ``keep_all=False`` raises on a batch that mixes faces and no-faces,
    so this calls ``detect()`` and chooses the face itself: the one overlapping the annotated
    box most where there is one, else the most probable.
    """

    def __init__(self, settings: LandmarkSettings, device: str | None = None) -> None:
        import torch
        from facenet_pytorch import MTCNN

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.mtcnn = MTCNN(
            keep_all=True,
            device=self.device,
            min_face_size=settings.min_face_size,
            thresholds=list(settings.thresholds),
            post_process=False,
        )

    def detect_all(self, image: np.ndarray, min_prob: float = 0.9) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Every face in one image with probability at least ``min_prob``, most probable first:
        ``[(points [5, 2], box (x0, y0, x1, y1), probability), ...]``."""
        return self.detect_frames([image], min_prob)[0]

    def detect_frames(self, frames: list[np.ndarray], min_prob: float = 0.9) -> list[list]:
        """:meth:`detect_all` for frames of one size, in one MTCNN call."""
        import torch

        if not frames:
            return []
        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(np.stack(frames), landmarks=True)
        out = []
        for b_, p_, pt_ in zip(boxes, probs, points):
            faces = [] if b_ is None else [
                (np.asarray(pt, dtype=np.float32), np.asarray(b, dtype=np.float64), float(p))
                for b, p, pt in zip(b_, p_, pt_) if p is not None and p >= min_prob
            ]
            out.append(sorted(faces, key=lambda f: -f[2]))
        return out

    def detect(
        self, images: list[np.ndarray], hints: list[Sequence[float] | None] | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, float] | None]:
        """Detect one face per image. All ``images`` must share one shape.

        Returns:
            per image ``(points [5, 2], box (x0, y0, x1, y1), probability)`` or ``None``.
        """
        import torch

        if not images:
            return []
        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(np.stack(images), landmarks=True)
        out = []
        for i in range(len(images)):
            if boxes[i] is None or len(boxes[i]) == 0:
                out.append(None)
                continue
            hint = hints[i] if hints else None
            if hint is not None:
                from torchvision.ops import box_iou

                iou = box_iou(torch.as_tensor(np.asarray(boxes[i]), dtype=torch.float64),
                              torch.as_tensor([hint], dtype=torch.float64))
                j = int(iou[:, 0].argmax())
            else:
                j = int(np.argmax(probs[i]))
            out.append((np.asarray(points[i][j], dtype=np.float32), np.asarray(boxes[i][j], dtype=np.float64), float(probs[i][j])))
        return out
