"""Writing predictions: a row per face (photos, video frames or a split) to CSV or JSON, a timeline
per video track, and annotated photos and videos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_fer.data.io import read_photo
from lightning_fer.files import atomic_path, write_csv, write_text
from lightning_fer.predict.inputs import DEFAULT_OUTPUT, PhotoScan, PredictOptions

log = logging.getLogger(__name__)


def face_rows(scan: PhotoScan, probs: np.ndarray, index: np.ndarray, names: list[str]) -> list[dict]:
    """A row per face of ``scan`` (``probs[k]`` is the face ``index[k]``'s class probabilities),
    then a row per input, or video frame, without a face (``error`` says why): what ``predict``
    writes and what :func:`lightning_fer.analyze` returns, from the same code."""
    rows = []
    for i, pr in zip(index, probs):
        f = scan.faces[int(i)]
        row = {"file": f.file}
        if f.frame is not None:
            row.update(frame=f.frame, time=f.time, track=f.track, searched=f.searched)
        row.update({"face": f.face, "box": [round(float(v), 1) for v in f.box],
                    "landmarks": np.round(np.asarray(f.points, np.float64), 1).tolist(), "face_prob": round(f.prob, 4)})
        row.update({f"p_{n}": round(float(p), 5) for n, p in zip(names, pr)})
        row["label"] = names[int(pr.argmax())]
        row["error"] = ""
        rows.append(row)
    rows += [{"file": file, **where, "face": "", "label": "", "error": reason} for file, reason, where, _ in scan.problems]
    return rows


def write_rows(rows: list[dict], out: Path) -> Path:
    """``rows`` to ``out`` (``.csv`` or ``.json``), atomically: a reader never sees half a file."""
    if out.suffix == ".json":
        return write_text(out, json.dumps(rows, indent=1))
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    cell = lambda v: json.dumps(v) if isinstance(v, list) else ("" if v is None else v)  # noqa: E731
    return write_csv(out, cols or ["file", "face", "label", "error"], ([cell(r.get(k)) for k in cols] for r in rows))


class FacePredictionWriter(BasePredictionWriter):
    """Write a row per face (file, face number, box, landmarks, class probabilities, label) to
    CSV or JSON, plus a row for every input without a usable face (and why); optionally annotated
    copies of the photos and videos, under the same relative paths as the inputs. A previous
    run's output is removed when prediction starts, and the new one written atomically at its end,
    even when no input gave a face: a reader never takes an old run's rows for this one's. The
    run ends with one summary line (inputs, faces, inputs without a face, unreadable inputs, and
    where the rows are).

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
            raise ValueError(f"--data.predict.output {output!r}: must end in .csv or .json")
        if smooth < 1:
            raise ValueError(f"--data.predict.video.smooth {smooth}: the smoothing window must be at least 1 frame")
        self.output = output
        self.annotate_dir = annotate_dir
        self.smooth = smooth
        self.written: Path | None = None

    @classmethod
    def from_options(cls, options: PredictOptions) -> FacePredictionWriter:
        """The writer a ``predict`` option group asks for."""
        return cls(options.output, options.annotate_dir, options.video.smooth)

    def _out(self, trainer) -> Path:
        out = Path(self.output)
        if trainer is not None and trainer.world_size > 1:
            out = out.with_name(f"{out.stem}.rank{trainer.global_rank}{out.suffix}")
        return out

    def on_predict_start(self, trainer, pl_module) -> None:
        self.written = None
        self._out(trainer).unlink(missing_ok=True)  # never leave an old run's rows to pass for this one's

    def rows(self, trainer, predictions) -> list[dict]:
        dm = trainer.datamodule
        names = list(trainer.lightning_module.class_names)
        probs = torch.cat([p["probs"] for p in predictions]).float().cpu().numpy() if predictions else np.zeros((0, len(names)))
        index = torch.cat([p["index"] for p in predictions]).cpu().numpy() if predictions else np.zeros(0, np.int64)
        scan: PhotoScan | None = getattr(dm, "photo_scan", None)
        if scan is not None:
            rows = face_rows(scan, probs, index, names)
        else:
            rows = []
            for i, pr in zip(index, probs):
                rec = dm.records[int(i)]
                rows.append({"file": rec.path, "face": 0, "true_label": names[rec.label],
                             **{f"p_{n}": round(float(p), 5) for n, p in zip(names, pr)},
                             "label": names[int(pr.argmax())], "error": ""})
        if self.smooth > 1:
            smooth_tracks(rows, names, self.smooth)
        return rows

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        self.finish(trainer, list(pl_module.class_names), self.rows(trainer, predictions))

    def finish(self, trainer, names: list[str], rows: list[dict]) -> Path:
        """Write ``rows``, the timelines and the annotated copies; say the summary line."""
        out = write_rows(rows, self._out(trainer))
        self.written = out
        log.info("wrote %d row(s) to %s", len(rows), out)
        timelines(rows, names, out.with_name(f"{out.stem}_timelines"))
        scan = getattr(getattr(trainer, "datamodule", None), "photo_scan", None)
        root = getattr(scan, "root", None)
        if self.annotate_dir:
            annotate([r for r in rows if "frame" not in r], Path(self.annotate_dir), root)
            for video in dict.fromkeys(r["file"] for r in rows if r.get("track") not in (None, "")):
                annotate_video(video, [r for r in rows if r["file"] == video and r.get("box")], Path(self.annotate_dir),
                               root)
        if scan is not None:
            log.info(scan.summary(str(out)))
        return out

    def finish_without_faces(self, trainer, pl_module) -> Path | None:
        """Lightning runs no prediction loop where no input gave a face: the rows (one per input,
        with its reason) are written all the same."""
        if self.written is not None or getattr(trainer.datamodule, "photo_scan", None) is None:
            return self.written
        return self.finish(trainer, list(pl_module.class_names), self.rows(trainer, []))


def mirrored(file: str, folder: Path, root: str | None, suffix: str) -> Path:
    """Where the annotated copy of ``file`` goes: its path relative to the predicted folder
    ``root``, under ``folder`` (two inputs of the same name in different folders never share one)."""
    src = Path(file)
    try:
        rel = src.resolve().relative_to(Path(root).resolve()) if root else Path(src.name)
    except ValueError:
        rel = Path(src.name)
    return folder / rel.parent / f"{rel.stem}_annotated{suffix}"


def annotate(rows: list[dict], folder: Path, root: str | None = None) -> list[Path]:
    """Copies of the photos, upright (EXIF) and shrunk as detection saw them, with each face's box
    and label drawn on them, under ``folder`` at the photos' paths relative to ``root``."""
    import cv2

    by_file: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("box"):
            by_file.setdefault(r["file"], []).append(r)
    written = []
    for file, faces in by_file.items():
        photo, s = read_photo(file)
        img = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
        scale = max(img.shape[:2]) / 500
        for r in faces:
            x0, y0, x1, y1 = (int(round(v * s)) for v in r["box"])
            cv2.rectangle(img, (x0, y0), (x1, y1), (0, 200, 0), max(1, int(2 * scale)))
            p = r.get(f"p_{r['label']}", 0)
            cv2.putText(img, f"{r['label']} {p:.2f}", (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5 * scale, (0, 200, 0), max(1, int(scale)), cv2.LINE_AA)
        out = mirrored(file, folder, root, ".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
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


def frame_boxes(rows: list[dict]) -> dict[int, list[tuple]]:
    """What to draw on every frame of a video whose looked-at frames gave ``rows``: each track's
    box on every frame from its first look to one look-step past its last, interpolated linearly
    between two looks and held after the last; the label is the last look's. Frame -> [(box, track,
    label, probability)].

    Example:
        >>> rows = [{"file": "v.mp4", "frame": 0, "track": 0, "box": [0, 0, 10, 10], "label": "happy", "p_happy": 0.9},
        ...         {"file": "v.mp4", "frame": 4, "track": 0, "box": [4, 0, 14, 10], "label": "sad", "p_sad": 0.6}]
        >>> b = frame_boxes(rows)
        >>> sorted(b), b[2][0][0], b[2][0][2], b[6][0][2]
        ([0, 1, 2, 3, 4, 5, 6, 7], (2.0, 0.0, 12.0, 10.0), 'happy', 'sad')
    """
    out: dict[int, list[tuple]] = {}
    for (_, _track), looks in _tracks(rows).items():
        frames = [int(r["frame"]) for r in looks]
        step = int(np.median(np.diff(frames))) if len(frames) > 1 else 1
        for r, nxt in zip(looks, [*looks[1:], None]):
            f0, b0 = int(r["frame"]), np.asarray(r["box"], np.float64)
            f1 = int(nxt["frame"]) if nxt is not None else f0 + max(step, 1)
            b1 = np.asarray(nxt["box"], np.float64) if nxt is not None else b0
            for f in range(f0, f1):
                t = (f - f0) / max(f1 - f0, 1)
                box = tuple(float(v) for v in b0 + (b1 - b0) * t)
                out.setdefault(f, []).append((box, int(r["track"]), r["label"], float(r.get(f"p_{r['label']}", 0))))
    return out


def annotate_video(path: str, rows: list[dict], folder: Path, root: str | None = None) -> Path | None:
    """A copy of the video (every frame, same rate and size) with each track's box, id and label on
    every frame (:func:`frame_boxes`: interpolated between the looked-at frames, so boxes do not
    blink when ``fps`` skips frames); written to a temporary name, then renamed."""
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        return None
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    by_frame = frame_boxes(rows)
    out = mirrored(path, folder, root, ".mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
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
                for box, track, label, p in by_frame.get(index, []):
                    x0, y0, x1, y1 = (int(round(v)) for v in box)
                    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 200, 0), 2)
                    cv2.putText(img, f"#{track} {label} {p:.2f}", (x0, max(12, y0 - 4)),
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
