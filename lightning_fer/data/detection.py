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


LandmarkMode = Literal["auto", "annotation", "mtcnn", "template", "dlib"]


NoFacePolicy = Literal["template", "skip", "error"]


@dataclass(frozen=True)
class LandmarkSettings:
    """How landmarks are found: the data module's ``landmarks`` option group (a plain mode
    string, ``landmarks: template``, means ``{mode: template}``).

    Args:
        mode: ``auto`` takes the annotation where a record has one and runs MTCNN otherwise;
            ``annotation`` requires annotations; ``mtcnn`` detects on every image; ``template``
            places the 5 points of :data:`TEMPLATE_5` on every (pre-aligned) crop; ``dlib``: the 68
            points of Dlib's shape predictor (the paper's landmarks; ``pip install
            "lightning-fer[dlib]"``) on the annotated face box, else on MTCNN's, or on the whole
            image where the data module's ``face_box`` is ``image`` (pre-cropped faces: no
            detector runs at all).
        no_face: what happens where MTCNN finds no face: ``template`` falls back to the template
            (its part views, and ``rest``, are then marked missing in the batch's ``view_mask``),
            ``skip`` leaves the image out (counted and listed), ``error`` stops.
        min_face_size: MTCNN's smallest face in pixels.
        thresholds: MTCNN's three stage thresholds.
        batch_size: images per MTCNN call in ``prepare_data()``.
        device: MTCNN's device (default: CUDA when available).
        min_inside: a part whose box (as the landmarks place it) lies less than this share inside
            the image is marked missing for that face.
        dlib_model: Dlib's ``shape_predictor_68_face_landmarks.dat`` (default: the one
            face-recognition-models installs).
        dlib_on: where ``dlib`` looks: ``box`` (the annotated box, else MTCNN's); ``find`` (Dlib's
            frontal face detector's box, else the whole picture where it finds no face; the data
            module sets it for ``face_box: image``, and the index report counts each path as
            ``dlib`` and ``dlib_whole``); or ``image`` (always the whole picture: only for tight crops).
        trust_cache: read the cached index without a ``stat`` of every image (seconds at
            AffectNet's size, more on network storage). Without it, only each machine's local
            rank 0 checks them, in ``prepare_data()``; the other ranks read the index as it left it.

    Example:
        >>> LandmarkSettings.of("template").mode, LandmarkSettings.of({"mode": "mtcnn", "no_face": "skip"}).no_face
        ('template', 'skip')
    """

    mode: LandmarkMode = "auto"
    no_face: NoFacePolicy = "template"
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    batch_size: int = 32
    device: str | None = None
    min_inside: float = 0.5
    dlib_model: str | None = None
    dlib_on: Literal["box", "find", "image"] = "box"
    trust_cache: bool = False

    def __post_init__(self) -> None:
        for option, value, choices in (("mode", self.mode, ("auto", "annotation", "mtcnn", "template", "dlib")),
                                       ("no_face", self.no_face, ("template", "skip", "error")),
                                       ("dlib_on", self.dlib_on, ("box", "find", "image"))):
            if value not in choices:
                raise ValueError(f"landmarks.{option} must be one of {list(choices)}, got {value!r}")
        if not 0.0 <= self.min_inside <= 1.0:
            raise ValueError(f"landmarks.min_inside must be in [0, 1], got {self.min_inside}")

    @classmethod
    def of(cls, value: LandmarkSettings | LandmarkMode | dict | None) -> LandmarkSettings:
        """The settings a ``landmarks`` option gives: a mode name, a mapping of fields, or settings."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, dict):
            return cls(**{k: tuple(v) if k == "thresholds" else v for k, v in value.items()})
        return cls(**{f: getattr(value, f) for f in cls.__dataclass_fields__})  # a parsed namespace

    def fingerprint(self) -> dict:
        """What the landmark cache depends on (how MTCNN is batched, where it runs and how far
        parts must be inside do not change what is cached)."""
        d = {k: v for k, v in asdict(self).items()
             if k not in ("batch_size", "device", "min_inside", "dlib_model", "dlib_on", "trust_cache")}
        if self.mode == "dlib":  # (only then: caches of the other modes stay valid)
            d["dlib_on"] = self.dlib_on
        d["thresholds"] = list(self.thresholds)
        d["version"] = CACHE_VERSION
        return d


def template_points(width: int, height: int) -> np.ndarray:
    """The 5 template points scaled to a ``width`` x ``height`` crop."""
    return TEMPLATE_5 * np.array([width, height], dtype=np.float32)


def dlib_model_path(path: str | None = None) -> str:
    """Dlib's 68-point shape predictor: ``path``, else the file face-recognition-models installs
    (found without importing that package, which needs setuptools' ``pkg_resources``)."""
    import importlib.util
    from pathlib import Path

    if path:
        if not Path(path).expanduser().is_file():
            raise FileNotFoundError(f"landmarks.dlib_model {path} does not exist")
        return str(Path(path).expanduser())
    spec = importlib.util.find_spec("face_recognition_models")
    found = None if spec is None else Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if found is None or not found.is_file():
        raise ImportError('landmarks mode "dlib" needs Dlib\'s 68-point model: pip install "lightning-fer[dlib]" '
                          "(dlib-bin, face-recognition-models), or set landmarks.dlib_model to a "
                          "shape_predictor_68_face_landmarks.dat")
    return str(found)


def _grey(image: np.ndarray) -> np.ndarray:
    grey = image if image.ndim == 2 else (image[..., :3].astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))
    return np.ascontiguousarray(grey.astype(np.uint8))


class DlibLandmarks:
    """Dlib's 68-point shape predictor (Kazemi & Sullivan's regression trees, iBUG order) on a
    given face box: no detector, so pre-cropped faces need none.

    Example:
        >>> import pytest; _ = pytest.importorskip("dlib")
        >>> dl = DlibLandmarks()
        >>> dl.points(np.full((48, 48, 3), 128, np.uint8), (0, 0, 48, 48)).shape
        (68, 2)
    """

    def __init__(self, model: str | None = None) -> None:
        try:
            import dlib
        except ImportError as err:
            raise ImportError('landmarks mode "dlib" needs dlib: pip install "lightning-fer[dlib]"') from err
        self._dlib = dlib
        self.predictor = dlib.shape_predictor(dlib_model_path(model))

    def find(self, image: np.ndarray) -> tuple[float, float, float, float] | None:
        """The largest face Dlib's frontal detector (HOG, one upsampling) finds in ``image``, as
        ``(x0, y0, x1, y1)``, or ``None``."""
        if not hasattr(self, "_detector"):
            self._detector = self._dlib.get_frontal_face_detector()
        faces = self._detector(_grey(image), 1)
        if not len(faces):
            return None
        f = max(faces, key=lambda r: r.width() * r.height())
        h, w = image.shape[:2]
        return (max(0.0, float(f.left())), max(0.0, float(f.top())), min(float(w), float(f.right() + 1)),
                min(float(h), float(f.bottom() + 1)))

    def locate(self, image: np.ndarray) -> tuple[tuple[float, float, float, float] | None, np.ndarray]:
        """The face :meth:`find` finds and its 68 points, or ``None`` and the points of the whole
        picture where it finds none: a loose crop is never fitted as one face."""
        box = self.find(image)
        h, w = image.shape[:2]
        return box, self.points(image, box or (0.0, 0.0, float(w), float(h)))

    def points(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The 68 points ``[68, 2]`` (pixels) of the face in ``box`` ``(x0, y0, x1, y1)`` of an
        RGB or grey ``image``."""
        grey = _grey(image)
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        shape = self.predictor(grey, self._dlib.rectangle(x0, y0, max(x1 - 1, x0 + 1), max(y1 - 1, y0 + 1)))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float32)


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
