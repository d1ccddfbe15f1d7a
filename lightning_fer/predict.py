"""Writing predictions: a row per face (photos, video frames or a split) to CSV or JSON, a timeline
per video track, and annotated photos and videos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_fer.data.io import read_image
from lightning_fer.data.photos import DEFAULT_OUTPUT, PhotoScan, PredictOptions
from lightning_fer.files import atomic_path, write_csv, write_text

log = logging.getLogger(__name__)


class FacePredictionWriter(BasePredictionWriter):
    """Write a row per face (file, face number, box, landmarks, class probabilities, label) to
    CSV or JSON, plus a row for every photo without a usable face; optionally annotated copies of
    the photos. Written atomically at the end of prediction.

    Faces in videos get their frame, time and track; ``smooth`` > 1 averages each track's
    probabilities over that many looked-at frames (centred) before the label is taken; a timeline
    PNG per track goes to ``<output stem>_timelines/`` beside the output.

    Args:
        output: ``.csv`` or ``.json`` file.
        annotate_dir: where to write annotated photos and videos (``None``: none).
        smooth: the window of the average along each track (1: none).
    """

    def __init__(self, output: str = DEFAULT_OUTPUT, annotate_dir: str | None = None, smooth: int = 1) -> None:
        super().__init__(write_interval="epoch")
        if not output.endswith((".csv", ".json")):
            raise ValueError(f"predict output {output!r} must end in .csv or .json")
        if smooth < 1:
            raise ValueError(f"video smoothing window must be at least 1 frame, got {smooth}")
        self.output = output
        self.annotate_dir = annotate_dir
        self.smooth = smooth

    @classmethod
    def from_options(cls, options: PredictOptions) -> FacePredictionWriter:
        """The writer a ``predict`` option group asks for."""
        return cls(options.output, options.annotate_dir, options.video.smooth)

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
                row = {"file": f.file}
                if f.frame is not None:
                    row.update(frame=f.frame, time=f.time, track=f.track)
                row.update({"face": f.face, "box": [round(v, 1) for v in f.box],
                            "landmarks": np.round(f.points, 1).tolist(), "face_prob": round(f.prob, 4)})
            else:
                rec = dm.records[int(i)]
                row = {"file": rec.path, "face": 0, "true_label": names[rec.label]}
            row.update({f"p_{n}": round(float(p), 5) for n, p in zip(names, pr)})
            row["label"] = names[int(pr.argmax())]
            row["error"] = ""
            rows.append(row)
        if self.smooth > 1:
            smooth_tracks(rows, names, self.smooth)
        if scan is not None:
            rows += [{"file": p[0], **(p[2] if len(p) > 2 else {}), "face": "", "label": "", "error": p[1]}
                     for p in scan.problems]
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
        names = list(pl_module.class_names)
        timelines(rows, names, out.with_name(f"{out.stem}_timelines"))
        if self.annotate_dir:
            annotate([r for r in rows if "frame" not in r], Path(self.annotate_dir))
            for video in dict.fromkeys(r["file"] for r in rows if r.get("track") not in (None, "")):
                annotate_video(video, [r for r in rows if r["file"] == video and r.get("box")], Path(self.annotate_dir))


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


def _tracks(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """Video rows with a face, by (file, track), in frame order."""
    out: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        if r.get("track") not in (None, ""):
            out.setdefault((r["file"], int(r["track"])), []).append(r)
    return {k: sorted(v, key=lambda r: r["frame"]) for k, v in out.items()}


def smooth_tracks(rows: list[dict], names: list[str], window: int) -> None:
    """Average each track's class probabilities over ``window`` looked-at frames (centred, shorter at
    the ends) and take the label from the average; in place."""
    for track in _tracks(rows).values():
        p = np.array([[r[f"p_{n}"] for n in names] for r in track])
        half = window // 2
        for i, r in enumerate(track):
            avg = p[max(0, i - half): i + half + 1].mean(0)
            r.update({f"p_{n}": round(float(v), 5) for n, v in zip(names, avg)})
            r["label"] = names[int(avg.argmax())]


def timelines(rows: list[dict], names: list[str], folder: Path) -> list[Path]:
    """A PNG per video track: each expression's probability against time."""
    from lightning_fer.plots import plot_timeline

    written = []
    for (file, track), rs in _tracks(rows).items():
        probs = [[r[f"p_{n}"] for n in names] for r in rs]
        written.append(plot_timeline([r["time"] for r in rs], probs, names, f"{Path(file).name}, track {track}",
                                     folder / f"{Path(file).stem}_track{track}.png"))
    return written


def annotate_video(path: str, rows: list[dict], folder: Path) -> Path | None:
    """A copy of the video (every frame, same rate and size) with the boxes, track ids and labels of
    the frames that were looked at; written to a temporary name, then renamed."""
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        return None
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    by_frame: dict[int, list[dict]] = {}
    for r in rows:
        by_frame.setdefault(int(r["frame"]), []).append(r)
    out = folder / f"{Path(path).stem}_annotated.mp4"
    folder.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        with atomic_path(out) as tmp:
            index = 0
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                if writer is None:
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
                for r in by_frame.get(index, []):
                    x0, y0, x1, y1 = (int(round(v)) for v in r["box"])
                    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 200, 0), 2)
                    cv2.putText(img, f"#{r['track']} {r['label']} {r.get('p_' + r['label'], 0):.2f}", (x0, max(12, y0 - 4)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 200, 0), 1, cv2.LINE_AA)
                writer.write(img)
                index += 1
            if writer is not None:
                writer.release()
                writer = None
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    return out
