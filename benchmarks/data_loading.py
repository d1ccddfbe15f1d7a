"""Data-layer throughput on FER2013: landmarks in ``prepare_data()`` (batched MTCNN against one
image at a time, and the cost of a cache hit), and the training loader against decoding alone
and against a plain torchvision ``ImageFolder``.

    python -m benchmarks.data_loading [--root ../shared/data/fer2013] [--limit N] [--image-size 64]

Loading is what a training epoch asks of the data layer: decode, landmarks from the cache,
geometric augmentation (moving the landmarks too), region views, normalisation. Its baselines,
on the same images in the same run:

- decoding alone (OpenCV, no landmarks, no augmentation): the floor;
- torchvision's ``ImageFolder`` with the same kind of augmentation (PIL decode, random affine,
  flip, colour jitter, resize, to tensor, normalise), the way most FER code loads images.

Figures are images/s and images/s per worker process (with 0 workers the main process does the
work: one process).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import Timer, machine, table
from lightning_fer.data.datamodule import FERDataModule
from lightning_fer.data.io import read_image
from lightning_fer.data.regions import REGIONS
from lightning_fer.data.sources import FolderSource, ManifestSource, write_manifest
from lightning_fer.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def subset_manifest(root: Path, limit: int, out: Path, name: str = "subset.csv") -> Path:
    """Every k-th FER2013 image, ``limit`` in all, as a manifest (PublicTest as the test split)."""
    records, names, _ = FolderSource(root).load()
    step = max(1, len(records) // limit) if limit else 1
    rows = [{"path": r.path, "label": names[r.label], "split": "test" if r.split == "val" else ""}
            for r in records[::step]][: limit or None]
    write_manifest(out / name, rows)
    return out / name


def landmark_rows(root: Path, n: int, work: Path) -> list[list]:
    """prepare_data() with MTCNN on ``n`` images: batched, one at a time, and a cache hit."""
    source = ManifestSource(subset_manifest(root, n, work, "landmarks.csv"))
    rows = []
    times = {}
    for _label, batch in (("batched MTCNN (32 per call)", 32), ("one image per MTCNN call", 1)):
        dm = FERDataModule(source, landmarks={"mode": "mtcnn", "batch_size": batch}, folds={"fold": None},
                           records={"cache_dir": str(work / f"lm{batch}")}, loader={"num_workers": 2})
        with Timer() as t:
            dm.prepared.index()
        times[batch] = t.seconds
    base = times[1]
    rows.append(["prepare_data(), cold, one image per MTCNN call (baseline)", n, base, n / base, "1.00"])
    rows.append(["prepare_data(), cold, batched MTCNN (32 per call)", n, times[32], n / times[32],
                 f"{base / times[32]:.2f}"])
    with Timer() as hit:
        FERDataModule(source, landmarks="mtcnn", folds={"fold": None}, records={"cache_dir": str(work / "lm32")},
                      loader={"num_workers": 2}).prepared.index()
    rows.append([f"prepare_data(), cache hit ({hit.seconds / n * 1e6:.0f} µs per image)", n, hit.seconds,
                 n / hit.seconds, f"{base / hit.seconds:.0f}"])
    return rows


def torchvision_loader(root: Path, paths: list[str], size: int, batch: int, workers: int):
    """torchvision's ImageFolder restricted to ``paths``, with augmentation like ours."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.Grayscale(num_output_channels=3),
        transforms.RandomHorizontalFlip(),
        transforms.RandomApply([transforms.RandomAffine(10, translate=(0.05, 0.05), scale=(0.9, 1.1))], p=0.8),
        transforms.RandomApply([transforms.ColorJitter(0.2, 0.2)], p=0.5),
        transforms.Resize((size, size), antialias=True),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    wanted = set(paths)
    ds = datasets.ImageFolder(str(root / "train"), transform=tf, is_valid_file=lambda p: p in wanted)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0)


def time_loader(loader, batches: int, batch: int) -> float:
    it = iter(loader)
    next(it)  # start the workers
    with Timer() as t:
        for _ in range(batches):
            next(it)
    del it
    return batches * batch / t.seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/fer2013"))
    ap.add_argument("--limit", type=int, default=0, help="load every k-th image, N in all (0: all of them)")
    ap.add_argument("--landmark-images", type=int, default=512, help="images for the MTCNN comparison")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30, help="batches timed per loader setting")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args(argv)
    root = Path(args.root)
    print(f"Machine: {machine()}\n")
    work = Path(tempfile.mkdtemp(prefix="fer-bench-"))
    try:
        rows = landmark_rows(root, args.landmark_images, work)
        print(table(["landmarks", "images", "seconds", "images/s", "speed-up"], rows))
        print()

        # The loader: landmarks from the cache (template points: the cost per item does not
        # depend on where the points came from), the training split of FER2013.
        source = (ManifestSource(subset_manifest(root, args.limit, work)) if args.limit
                  else FolderSource(root, split_map={"val": "test"}))
        dm = FERDataModule(source, landmarks="template", image_size=args.image_size,
                           records={"cache_dir": str(work / "cache")},
                           loader={"batch_size": args.batch, "num_workers": 2})
        dm.prepare_data()
        dm.setup("fit")
        paths = dm.datasets["train"].paths
        k = min(args.batch * args.batches, len(paths))
        with Timer() as t:
            for p in paths[:k]:
                read_image(p)
        floor = k / t.seconds
        rows = [["decode only (OpenCV), 1 process", "-", floor, floor, "1.00", "-"]]
        tv = {}
        for workers in args.workers:
            ips = time_loader(torchvision_loader(root, paths, args.image_size, args.batch, workers),
                              args.batches, args.batch)
            tv[workers] = ips
            per = ips / max(workers, 1)
            rows.append([f"torchvision ImageFolder + transforms (baseline), {workers} workers", workers, ips, per,
                         f"{per / floor:.3f}", "1.00"])
        for augmentation in ("affine", "albumentations"):
            for views in (["face"], list(REGIONS)):
                for workers in args.workers:
                    d = FERDataModule(source, landmarks="template", views=views, image_size=args.image_size,
                                      training={"augmentation": augmentation},
                                      records={"cache_dir": str(work / "cache")},
                                      loader={"batch_size": args.batch, "num_workers": workers})
                    d.setup("fit")
                    ips = time_loader(d.train_dataloader(), args.batches, args.batch)
                    per = ips / max(workers, 1)
                    label = (f"FERDataModule ({augmentation}), views={'face' if len(views) == 1 else 'all six'}, "
                             f"{workers} workers")
                    rows.append([label, workers, ips, per, f"{per / floor:.3f}", f"{ips / tv[workers]:.2f}"])
        print(table([f"training loader ({args.image_size} px, augmentation on, batch {args.batch})", "workers",
                     "images/s", "images/s per process", "per process vs decode", "vs torchvision (same workers)"],
                    rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
