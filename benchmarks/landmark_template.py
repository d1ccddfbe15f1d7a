"""Measure the 5-point template for pre-aligned crops: mean MTCNN landmarks on FER2013.

    python -m benchmarks.landmark_template [--root ../shared/data/fer2013] [--n 2000]

Prints the mean landmark positions as fractions of width and height, the detection rate, and
the throughput, so that ``TEMPLATE_5`` in ``lightning_fer/data/landmarks.py`` can be checked.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from lightning_fer.data.detection import FaceDetector, LandmarkSettings
from lightning_fer.data.io import load_image_checked


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/fer2013"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    files = sorted(Path(args.root, "train").glob("*/*.jpg"))
    random.Random(args.seed).shuffle(files)
    files = files[: args.n]
    det = FaceDetector(LandmarkSettings(), device="cpu")
    t0 = time.perf_counter()
    found = []
    for s in range(0, len(files), 64):
        imgs = [load_image_checked(str(f)) for f in files[s : s + 64]]
        for img, r in zip(imgs, det.detect(imgs)):
            if r is not None:
                found.append(r[0] / np.array([img.shape[1], img.shape[0]]))
    dt = time.perf_counter() - t0
    pts = np.stack(found)
    print(f"{len(files)} images, faces found in {len(found)} ({len(found) / len(files):.1%}), {len(files) / dt:.0f} images/s")
    print("mean (x, y) fractions:\n", np.round(pts.mean(0), 3))
    print("std:\n", np.round(pts.std(0), 3))


if __name__ == "__main__":
    main()
