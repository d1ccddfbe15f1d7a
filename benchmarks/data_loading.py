"""Data-layer throughput: ``prepare_data()`` on a folder data set (cold and cached), and the
training loader with ``face`` alone and with all six views, against decoding alone.

    python benchmarks/data_loading.py [--root ../shared/data/fer2013] [--limit N] [--image-size 64]

Decoding alone (OpenCV, no landmarks, no augmentation) is the floor the loader is compared to.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import Timer, machine, table  # noqa: E402
from lightning_fer.data.datamodule import FERDataModule  # noqa: E402
from lightning_fer.data.io import read_image  # noqa: E402
from lightning_fer.data.regions import REGIONS  # noqa: E402
from lightning_fer.data.sources import FolderSource, ManifestSource, write_manifest  # noqa: E402


def subset_manifest(root: Path, limit: int, out: Path) -> Path:
    records, names, _ = FolderSource(root).load()
    step = max(1, len(records) // limit) if limit else 1
    rows = [dict(path=r.path, label=names[r.label], split="test" if r.split == "val" else "")
            for r in records[::step]][: limit or None]
    write_manifest(out / "subset.csv", rows)
    return out / "subset.csv"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/fer2013"))
    ap.add_argument("--limit", type=int, default=0, help="use every k-th image, N in all (0: all)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30, help="batches timed per loader setting")
    args = ap.parse_args(argv)
    print(f"Machine: {machine()}\n")
    work = Path(tempfile.mkdtemp(prefix="fer-bench-"))
    try:
        source = ManifestSource(subset_manifest(Path(args.root), args.limit, work)) if args.limit else FolderSource(
            args.root, split_map={"val": "test"})
        rows = []
        dm = FERDataModule(source, image_size=args.image_size, batch_size=args.batch, num_workers=2,
                           cache_dir=str(work / "cache"))
        with Timer() as cold:
            dm.prepare_data()
        rep = dm.index_report
        n = rep.total
        rows.append(["prepare_data(), cold (decode + MTCNN + cache)", n, cold.seconds, n / cold.seconds, "1.00"])
        with Timer() as warm:
            FERDataModule(source, image_size=args.image_size, num_workers=2, cache_dir=str(work / "cache")).prepare_data()
        rows.append(["prepare_data(), cached", n, warm.seconds, n / warm.seconds, f"{cold.seconds / warm.seconds:.0f}x faster"])
        print(table(["stage", "images", "seconds", "images/s", "ratio"], rows))
        print(f"\nLandmarks: {dict(rep.kinds)} (MTCNN found a face in {rep.kinds['mtcnn'] / n:.1%})\n")

        dm.setup("fit")
        paths = dm.datasets["train"].paths
        k = args.batch * args.batches
        with Timer() as t:
            for p in paths[:k]:
                read_image(p)
        floor = k / t.seconds
        rows = [["decode only (OpenCV), 1 process", floor, "1.00"]]
        for views in (["face"], list(REGIONS)):
            for workers in (0, 2):
                d = FERDataModule(source, views=views, image_size=args.image_size, batch_size=args.batch,
                                  num_workers=workers, cache_dir=str(work / "cache"))
                d.setup("fit")
                it = iter(d.train_dataloader())
                next(it)  # start workers
                with Timer() as t:
                    for _ in range(args.batches):
                        next(it)
                ips = args.batches * args.batch / t.seconds
                label = f"train loader, views={'face' if len(views) == 1 else 'all six'}, {workers} workers"
                rows.append([label, ips, f"{ips / floor:.2f}"])
                del it
        print(table([f"loading ({args.image_size} px, augmentation on)", "images/s", "vs decode"], rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
