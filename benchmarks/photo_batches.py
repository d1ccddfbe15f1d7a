"""Face detection over a folder of photos: one MTCNN call per photo against one call per group of
same-size photos (``lightning_fer.predict.inputs.PHOTO_BATCH``), on the same photos in the same run.

    python -m benchmarks.photo_batches            # 32 photos of 1280x960, one face each
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table  # noqa: E402


def photos(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    import cv2
    from skimage import data as skdata

    rng = np.random.default_rng(0)
    face = skdata.astronaut()[:300, 100:400]
    out = []
    for _ in range(n):
        img = np.full((size[1], size[0], 3), rng.integers(60, 200), np.uint8)
        side = int(rng.integers(200, 400))
        x, y = int(rng.integers(0, size[0] - side)), int(rng.integers(0, size[1] - side))
        img[y:y + side, x:x + side] = cv2.resize(face, (side, side))
        out.append(img)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--photos", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    from lightning_fer.predict import inputs as ph

    images = photos(args.photos, (1280, 960))
    detector = ph.make_detector()
    ph.scan_inputs(images[:2], detector=detector)  # warm-up
    rows, base = [], None
    for batch in (1, ph.PHOTO_BATCH):
        ph.PHOTO_BATCH = batch
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            scan = ph.scan_inputs(images, detector=detector)
            best = min(best, time.perf_counter() - t)
        base = base or best
        rows.append([f"{batch} photo(s) per MTCNN call", len(scan.faces), f"{args.photos / best:.2f}", f"{base / best:.2f}"])
    print(f"Machine: {machine()}")
    print(table(["detection", "faces found", "photos/s", "x one at a time"], rows))


if __name__ == "__main__":
    main()
