"""The one-call Python API: :func:`analyze` a photo (a path, a PIL image, an RGB array) or a video, and
get each face's box, landmarks and expression; :class:`Predictor` keeps the model and the face
detector loaded for repeated calls.

It is ``predict``'s pipeline, not a second one: the same detection (MTCNN, or the whole picture
with ``face_box="image"``), the same crops through the data module's transform, the same
normalisation, the model's own ``predict_step`` (flip test-time augmentation where the model was
shipped with it) and the same rows (:func:`~lightning_fer.predict.writers.face_rows`), so that the
probabilities equal the CLI's on the same files.

    >>> import lightning_fer
    >>> faces = lightning_fer.analyze("photo.jpg")                      # doctest: +SKIP
    >>> faces[0]["label"], faces[0]["probabilities"]["happy"]           # doctest: +SKIP
    ('happy', 0.93)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lightning_fer.data.io import ImageReadError
from lightning_fer.predict.detection import make_detector
from lightning_fer.predict.inputs import PhotoScan, PredictOptions, input_name, scan_inputs
from lightning_fer.predict.video import VideoOptions, is_video

log = logging.getLogger(__name__)

__all__ = ["Predictor", "analyze"]

#: Keys of a face dict (besides ``frame``, ``time`` and ``track`` in videos).
FACE_KEYS = ("box", "landmarks", "face_prob", "label", "probabilities")


def _load(model) -> tuple[torch.nn.Module, dict]:
    """The module and the data settings it was trained with: a shipped name (its bundle's data),
    a checkpoint path (the data module's saved hyperparameters, else the model's size and
    channels), or a module (the same fallback)."""
    import lightning as L

    from lightning_fer import zoo

    if isinstance(model, L.LightningModule):
        return model.eval(), {}
    if isinstance(model, str) and model in zoo.names():
        return zoo.pretrained(model), dict(zoo.load_bundle(model)["data"])
    path = Path(os.fspath(model))
    if not path.is_file():
        raise FileNotFoundError(f"model {model!r}: neither a shipped model ({', '.join(zoo.names())}) nor a "
                                "checkpoint file; python -m lightning_fer pretrained lists the shipped ones")
    from lightning_fer.checkpoints import safe_load
    from lightning_fer.data.legacy import current_data_options
    from lightning_fer.models.classifier import FERClassifier

    ckpt = safe_load(path)
    data = current_data_options(dict(ckpt.get("datamodule_hyper_parameters") or {}))[0]
    return FERClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval(), data


class Predictor:
    """A model and a face detector, loaded once, for :meth:`analyze` calls.

    Args:
        model: a shipped model's name (``python -m lightning_fer pretrained``), a ``FERClassifier``
            checkpoint, or a ``FERClassifier`` / ``EnsembleModule`` object.
        face_box: ``auto``: find faces with MTCNN; ``image``: each picture is one face (faces
            cropped already), no detector.
        min_face_prob: MTCNN probability a face needs.
        video: how videos are read and their faces followed (:class:`~lightning_fer.predict.video.VideoOptions`).
        batch_size: faces per forward pass.
        device: ``cpu``, ``cuda`` or ``None`` (a GPU where there is one).
        fast_path: ``auto``, ``on`` or ``off``: the arithmetic ``predict`` would choose here.
        data: data settings that override the model's (``image_size``, ``channels``, ``views``,
            ``loader.wire``).
        runtime: ``eager`` (PyTorch), or as ``predict``'s ``--data.predict.runtime``: ``auto`` (the
            fastest of eager, ONNX Runtime and a checked int8 version, measured once here),
            ``onnx`` or ``int8``; the exported model is cached under the library's home.

    Example:
        >>> import numpy as np
        >>> p = Predictor("fer2013", face_box="image")
        >>> faces = p.analyze(np.full((48, 48, 3), 128, np.uint8))
        >>> len(faces), sorted(faces[0])[:3], round(sum(faces[0]["probabilities"].values()), 3)
        (1, ['box', 'face_prob', 'label'], 1.0)
    """

    def __init__(self, model: Any = "fer2013", face_box: Literal["auto", "image"] = "auto", min_face_prob: float = 0.9,
                 video: VideoOptions | dict | None = None, batch_size: int = 64, device: str | None = None,
                 fast_path: Literal["auto", "on", "off"] = "auto", data: dict | None = None,
                 runtime: Literal["eager", "auto", "onnx", "int8"] = "eager") -> None:
        from lightning_fer.data.datamodule import FERDataModule
        from lightning_fer.data.legacy import current_data_options
        from lightning_fer.fastpath import choose

        if face_box not in ("auto", "image"):
            raise ValueError(f"face_box {face_box!r}: must be 'auto' (find faces) or 'image' (each picture is a face)")
        self.model, settings = _load(model)
        hp = getattr(self.model, "hparams", {})
        settings.setdefault("image_size", hp.get("image_size") or 224)
        settings.setdefault("channels", hp.get("in_channels") or 3)
        if getattr(self.model, "views", None):
            settings["views"] = list(self.model.views)
        settings.update(current_data_options(dict(data or {}))[0])
        self.video = video if isinstance(video, VideoOptions) else VideoOptions(**(video or {}))
        self.min_face_prob, self.face_box = float(min_face_prob), face_box
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.fast_path = choose(fast_path, self.device.type)
        if fast_path == "auto" and self.fast_path.autocast_dtype == torch.bfloat16 and isinstance(model, str):
            from lightning_fer.shipped import bf16_checked, names

            ok, why = bf16_checked(model) if model in names() else (True, "")
            if not ok:  # a shipped model whose bf16 accuracy was not checked, or lost too much
                log.info("%s: bf16 not considered (%s): float32", model, why)
                self.fast_path = choose("off", self.device.type)
        wire = dict(settings.get("loader") or {}).get("wire", "float32")
        # The data module predict builds, minus its source: the same transform and normalisation.
        self.datamodule = FERDataModule("synthetic", views=settings.get("views", ["face"]),
                                        **{k: v for k, v in settings.items() if k in ("image_size", "channels")},
                                        loader={"batch_size": batch_size, "num_workers": 0, "wire": wire},
                                        face_box=face_box, predict=PredictOptions(path="<memory>"))
        self.model.to(self.device)
        if hasattr(self.model, "set_channels_last"):
            self.model.set_channels_last(self.fast_path.channels_last)
        self.detector = make_detector(face_box == "image", str(self.device))
        self.class_names = list(self.model.class_names)
        self.runtime, self.runner = "eager", None  # the choice, and the ONNX Runtime callable the model runs through
        if runtime != "eager":
            from lightning_fer.files import home
            from lightning_fer.predict.runtimes import OnnxPredict

            choice = OnnxPredict(runtime, home() / "onnx")
            self.runtime = choice.attach(self.model, self.datamodule.image_size, self.datamodule.channels,
                                         self.fast_path.autocast)
            self.runner = choice.runner

    def scan(self, items: list) -> PhotoScan:
        """Faces in ``items`` (paths, PIL images, arrays), with the reasons for those without one."""
        return scan_inputs(items, self.min_face_prob, str(self.device), self.video, self.face_box == "image",
                           self.detector)

    @torch.inference_mode()
    def rows(self, scan: PhotoScan) -> list[dict]:
        """``predict``'s rows for ``scan``: a row per face, then one per input (or frame) without one."""
        from lightning_fer.predict.runtimes import running
        from lightning_fer.predict.writers import face_rows

        dm = self.datamodule
        dm.use_scan(scan)
        probs, index = [], []
        with self.fast_path.autocast(), running(self.model, self.runner):
            for i, batch in enumerate(dm.predict_dataloader()):
                batch = dm.on_after_batch_transfer({k: v.to(self.device) if torch.is_tensor(v) else v
                                                    for k, v in batch.items()}, 0)
                out = self.model.predict_step(batch, i)
                probs.append(out["probs"].float().cpu())
                index.append(batch["index"].cpu())
        p = torch.cat(probs).numpy() if probs else np.zeros((0, len(self.class_names)), np.float32)
        k = torch.cat(index).numpy() if index else np.zeros(0, np.int64)
        return face_rows(scan, p, k, self.class_names)

    def analyze(self, images, on_error: Literal["raise", "skip"] = "raise"):
        """Faces and expressions in ``images``.

        Args:
            images: a path (photo or video), a PIL image, an RGB uint8 array ``[H, W, 3]`` (grey
                ``[H, W]`` too; arrays are taken as RGB, not OpenCV's BGR), or a list of them.
            on_error: ``raise``: an input that cannot be read raises
                :class:`~lightning_fer.data.io.ImageReadError` naming it; ``skip``: it gives no faces,
                and a warning counts and lists the skipped inputs.

        Returns:
            For one photo, a list with a dict per face: ``box`` (x0, y0, x1, y1 in pixels of the
            upright photo), ``landmarks`` (5 points), ``face_prob``, ``label`` and
            ``probabilities`` (class name -> float); for a list, a list of such lists, in order.
            For a video, an iterator over its looked-at frames: ``{"frame", "time", "faces"}``, each
            face with its ``track`` and ``searched`` (found by the detector on that frame, or carried
            there by optical flow: :class:`~lightning_fer.predict.video.VideoOptions`' ``search_every``).
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        out = [self._video(v, on_error) if _is_video(v) else None for v in items]
        photos = [(i, v) for i, v in enumerate(items) if out[i] is None]
        rows = self.rows(self.scan([v for _, v in photos])) if photos else []
        names: dict[str, list[int]] = {}
        for j, (i, v) in enumerate(photos):
            names.setdefault(input_name(v, j), []).append(i)
        found: dict[int, list[dict]] = {i: [] for i, _ in photos}
        skipped = []
        for r in rows:
            if r["error"]:
                if not r["error"].startswith("no face found"):
                    skipped.append(f"{r['file']}: {r['error']}")
                continue
            for i in names[r["file"]]:  # the same path given twice: both get its faces
                found[i].append(self.face(r))
        if skipped and on_error == "raise":
            raise ImageReadError(skipped[0] + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))
        if skipped:
            log.warning("analyze: skipped %d unreadable input(s): %s", len(skipped), "; ".join(skipped))
        for i, faces in found.items():
            out[i] = faces
        return out[0] if single else out

    __call__ = analyze

    def face(self, r: dict) -> dict:
        """A face dict (:func:`analyze`'s) from one of predict's rows."""
        face = {k: r[k] for k in ("frame", "time", "track", "searched") if k in r}
        face.update(box=r["box"], landmarks=r["landmarks"], face_prob=r["face_prob"], label=r["label"],
                    probabilities={n: r[f"p_{n}"] for n in self.class_names})
        return face

    def _video(self, path, on_error: str) -> Iterator[dict]:
        scan = self.scan([path])
        rows = self.rows(scan)
        bad = [r for r in rows if r["error"] and "frame" not in r and not r["error"].startswith("no face found")]
        if bad and on_error == "raise":
            raise ImageReadError(f"{bad[0]['file']}: {bad[0]['error']}")
        return _frames(rows, self.face)


def _is_video(item) -> bool:
    return isinstance(item, (str, os.PathLike)) and is_video(item)


def _frames(rows: list[dict], face) -> Iterator[dict]:
    by_frame: dict[int, dict] = {}
    for r in rows:
        if "frame" not in r or r.get("frame") in (None, ""):
            continue
        f = by_frame.setdefault(int(r["frame"]), {"frame": int(r["frame"]), "time": r.get("time"), "faces": []})
        if not r["error"]:
            f["faces"].append(face(r))
    for k in sorted(by_frame):
        yield by_frame[k]


_PREDICTORS: dict[tuple, Predictor] = {}


def analyze(images, model: Any = "fer2013", face_box: Literal["auto", "image"] = "auto",
            on_error: Literal["raise", "skip"] = "raise", **options):
    """Faces and expressions in ``images``, in one call: :meth:`Predictor.analyze` on a
    :class:`Predictor` kept for the next call with the same ``model`` and options.

    Example:
        >>> import numpy as np, lightning_fer
        >>> faces = lightning_fer.analyze([np.full((48, 48), 90, np.uint8)] * 2, face_box="image")
        >>> len(faces), len(faces[0]), faces[0][0]["label"] in faces[0][0]["probabilities"]
        (2, 1, True)
    """
    key = (model if isinstance(model, (str, os.PathLike)) else id(model), face_box, repr(sorted(options.items())))
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor(model, face_box=face_box, **options)
    return _PREDICTORS[key].analyze(images, on_error)
