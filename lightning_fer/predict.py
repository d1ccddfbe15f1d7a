"""Writing predictions: a row per face (photos or a split) to CSV or JSON, and annotated photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_fer.data.io import read_image
from lightning_fer.data.photos import DEFAULT_OUTPUT, PhotoOptions, PhotoScan
from lightning_fer.files import atomic_path, write_csv, write_text

log = logging.getLogger(__name__)


class FacePredictionWriter(BasePredictionWriter):
    """Write a row per face (file, face number, box, landmarks, class probabilities, label) to
    CSV or JSON, plus a row for every photo without a usable face; optionally annotated copies of
    the photos. Written atomically at the end of prediction.

    Args:
        output: ``.csv`` or ``.json`` file.
        annotate_dir: where to write annotated photos (``None``: none).
    """

    def __init__(self, output: str = DEFAULT_OUTPUT, annotate_dir: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        if not output.endswith((".csv", ".json")):
            raise ValueError(f"predict output {output!r} must end in .csv or .json")
        self.output = output
        self.annotate_dir = annotate_dir

    @classmethod
    def for_datamodule(cls, datamodule) -> FacePredictionWriter | None:
        """The writer a data module's photo options ask for (``None``: not predicting on photos)."""
        photos: PhotoOptions | None = getattr(datamodule, "photos", None)
        return cls(photos.output, photos.annotate_dir) if photos is not None else None

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
        if out.suffix == ".json":
            write_text(out, json.dumps(rows, indent=1))
        else:
            cols: list[str] = []
            for r in rows:
                cols += [k for k in r if k not in cols]
            cell = lambda v: json.dumps(v) if isinstance(v, list) else ("" if v is None else v)  # noqa: E731
            write_csv(out, cols, ([cell(r.get(k)) for k in cols] for r in rows))
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
        with atomic_path(out) as tmp:
            cv2.imwrite(str(tmp), img)
        written.append(out)
    return written
