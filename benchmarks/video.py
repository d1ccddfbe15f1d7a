"""Video prediction speed: frames per second of the whole ``predict`` pipeline on a video (frames
read, MTCNN in batches, tracking, region views, a member's forward, the CSV and the timelines)
against MTCNN alone on the same frames (the floor), at 640x360 with one and with three faces.

    python -m benchmarks.video [--frames 60] [--backbone resnet18] [--size 48]

The videos are written here (the astronaut's face from scikit-image moved across a background),
so the figures do not depend on a data set. The member is untrained (weights do not change the cost).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table  # noqa: E402


def write_video(path: Path, faces: int, frames: int, fps: int = 30) -> Path:
    from skimage import data as skdata

    face = cv2.resize(skdata.astronaut()[20:230, 120:330, ::-1], (100, 100), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for i in range(frames):
        img = np.full((360, 640, 3), (90, 110, 130), np.uint8)
        for k in range(faces):
            x, y = 20 + 200 * k + (i % 40), 40 + 120 * (k % 2)
            img[y:y + 100, x:x + 100] = face if k % 2 == 0 else face[:, ::-1]
        writer.write(img)
    writer.release()
    return path


def mtcnn_alone(path: Path, batch: int) -> float:
    """Seconds to read every frame and run batched MTCNN on it: the floor of the pipeline."""
    from lightning_fer.data.detection import FaceDetector, LandmarkSettings

    detector = FaceDetector(LandmarkSettings())
    cap = cv2.VideoCapture(str(path))
    t0, pending = time.perf_counter(), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        pending.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if len(pending) == batch:
            detector.detect_frames(pending)
            pending = []
    if pending:
        detector.detect_frames(pending)
    cap.release()
    return time.perf_counter() - t0


def pipeline(path: Path, out: Path, backbone: str, size: int, batch: int) -> tuple[float, int]:
    """Seconds of the whole predict on ``path`` and the number of face rows it wrote."""
    import csv

    from lightning_fer.build import build

    t0 = time.perf_counter()
    built = build(HERE.parent / "configs" / "demo" / "resnet50.yaml", {
        "model": {"init_args": {"backbone": backbone}},
        "data": {"init_args": {"image_size": size, "loader": {"num_workers": 0},
                               "predict": {"path": str(path), "output": str(out), "video": {"batch_size": batch}}}},
        "trainer": {"logger": False, "enable_progress_bar": False, "callbacks": []},
    })
    from lightning_fer.predict.writers import FacePredictionWriter

    built.trainer.callbacks.append(FacePredictionWriter.from_options(built.datamodule.predict_options))  # as the CLI's predict does
    built.trainer.predict(built.model, datamodule=built.datamodule)
    seconds = time.perf_counter() - t0
    rows = [r for r in csv.DictReader(open(out)) if r["label"]]
    return seconds, len(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16, help="frames per MTCNN call")
    args = ap.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning_fer").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for faces in (1, 3):
            video = write_video(Path(d) / f"faces{faces}.mp4", faces, args.frames)
            floor = mtcnn_alone(video, args.batch)
            whole, n = pipeline(video, Path(d) / f"faces{faces}.csv", args.backbone, args.size, args.batch)
            rows.append([f"{faces} face(s): read + MTCNN alone (baseline)", args.frames / floor, "1.00", "-"])
            rows.append([f"{faces} face(s): whole predict ({args.backbone} {args.size} px, CSV, timelines)",
                         args.frames / whole, f"{floor / whole:.2f}", n])
    print(f"Machine: {machine()}\n640x360, {args.frames} frames, MTCNN batches of {args.batch} frames\n")
    print(table(["what", "frames/s", "vs MTCNN alone", "face rows"], rows))


if __name__ == "__main__":
    main()
