"""Prediction on photos: every face found by MTCNN, its region views, a row per face."""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import Dataset

from lightning_fer.data.io import ImageReadError, load_image_checked, read_image
from lightning_fer.data.sources import IMAGE_EXTENSIONS
from lightning_fer.data.transforms import FaceTransform

log = logging.getLogger(__name__)


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
    from lightning_fer.data.landmarks import FaceDetector, LandmarkSettings

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


class FacePredictionWriter(BasePredictionWriter):
    """Write a row per face (file, face number, box, landmarks, class probabilities, label) to
    CSV or JSON, plus a row for every photo without a usable face; optionally annotated copies of
    the photos. Written atomically at the end of prediction.

    Args:
        output: ``.csv`` or ``.json`` file.
        annotate_dir: where to write annotated photos (``None``: none).
    """

    def __init__(self, output: str = "runs/predict/predictions.csv", annotate_dir: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        if not output.endswith((".csv", ".json")):
            raise ValueError(f"predict output {output!r} must end in .csv or .json")
        self.output = output
        self.annotate_dir = annotate_dir

    def rows(self, trainer, predictions) -> list[dict]:
        dm = trainer.datamodule
        names = list(trainer.lightning_module.class_names)
        probs = torch.cat([p["probs"] for p in predictions]).float().cpu().numpy()
        index = torch.cat([p["index"] for p in predictions]).cpu().numpy()
        rows = []
        scan: PhotoScan | None = getattr(dm, "photo_scan", None)
        for i, pr in zip(index, probs):
            if scan is not None:
                f = scan.faces[int(i)]
                row = {"file": f.file, "face": f.face, "box": [round(v, 1) for v in f.box],
                       "landmarks": np.round(f.points, 1).tolist(), "face_prob": round(f.prob, 4)}
            else:
                rec = dm.records[int(i)]
                row = {"file": rec.path, "face": 0, "true_label": names[rec.label]}
            row.update({f"p_{n}": round(float(p), 5) for n, p in zip(names, pr)})
            row["label"] = names[int(pr.argmax())]
            row["error"] = ""
            rows.append(row)
        if scan is not None:
            rows += [{"file": f, "face": "", "label": "", "error": why} for f, why in scan.problems]
        return rows

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows = self.rows(trainer, predictions)
        out = Path(self.output)
        if trainer.world_size > 1:
            out = out.with_name(f"{out.stem}.rank{trainer.global_rank}{out.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        if out.suffix == ".json":
            tmp.write_text(json.dumps(rows, indent=1))
        else:
            cols: list[str] = []
            for r in rows:
                cols += [k for k in r if k not in cols]
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                for r in rows:
                    w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
        os.replace(tmp, out)
        log.info("wrote %d row(s) to %s", len(rows), out)
        if self.annotate_dir:
            annotate(rows, Path(self.annotate_dir))


def annotate(rows: list[dict], folder: Path) -> list[Path]:
    """Copies of the photos with each face's box and label drawn on them."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("box"):
            by_file.setdefault(r["file"], []).append(r)
    written = []
    for file, faces in by_file.items():
        img = cv2.cvtColor(read_image(file), cv2.COLOR_RGB2BGR)
        scale = max(img.shape[:2]) / 500
        for r in faces:
            x0, y0, x1, y1 = (int(round(v)) for v in r["box"])
            cv2.rectangle(img, (x0, y0), (x1, y1), (0, 200, 0), max(1, int(2 * scale)))
            p = r.get(f"p_{r['label']}", 0)
            cv2.putText(img, f"{r['label']} {p:.2f}", (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5 * scale, (0, 200, 0), max(1, int(scale)), cv2.LINE_AA)
        out = folder / f"{Path(file).stem}_annotated.jpg"
        tmp = folder / f".{out.stem}.tmp{os.getpid()}.jpg"
        cv2.imwrite(str(tmp), img)
        os.replace(tmp, out)
        written.append(out)
    return written
