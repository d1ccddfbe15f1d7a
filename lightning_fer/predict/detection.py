"""Finding faces at predict: MTCNN (:class:`~lightning_fer.data.detection.FaceDetector`, the
training data's detector), or the whole picture where the inputs are faces already; on frames
shrunk first where faces are large (a video's ``detect_side``)."""

from __future__ import annotations

import numpy as np


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


def make_detector(whole_image: bool = False, device: str | None = None):
    """MTCNN (:class:`~lightning_fer.data.detection.FaceDetector`), or :class:`WholeImage`."""
    from lightning_fer.data.detection import FaceDetector, LandmarkSettings

    return WholeImage() if whole_image else FaceDetector(LandmarkSettings(), device)


def search(detector, frames: list[np.ndarray], min_prob: float, max_side: int | None = None) -> list[list]:
    """``detector.detect_frames(frames)``, on copies shrunk so that their longer side is at most
    ``max_side`` (``None``: as they are); boxes and points come back in the frames' own pixels.
    MTCNN's work grows with the pixels while its smallest face is 20 px in the shrunk frame, so
    this pays where the faces are large.

    Example:
        >>> frames = [np.zeros((360, 640, 3), np.uint8)]
        >>> [(pts.tolist(), box.tolist()) for pts, box, _ in search(WholeImage(), frames, 0.9, 320)[0]][0][1]
        [0.0, 0.0, 640.0, 360.0]
    """
    if not frames:
        return []
    h, w = frames[0].shape[:2]
    if not max_side or max(h, w) <= max_side:
        return detector.detect_frames(frames, min_prob)
    import cv2

    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    sx, sy = w / size[0], h / size[1]
    return [[(np.asarray(pts, np.float32) * np.float32([sx, sy]), np.asarray(box, np.float64) * [sx, sy, sx, sy], p)
             for pts, box, p in faces] for faces in detector.detect_frames(small, min_prob)]
