"""One GPU, a few minutes: ResNet50 at 224 px with ``16-mixed``, training images/s with real
data loading (FER2013 through ``FERDataModule``) against synthetic tensors already on the GPU,
and ensemble inference (Inception V3, ResNet50, SPP-net on the five regions) images/s.

    python -m benchmarks.gpu [--root ../shared/data/fer2013] [--batch 128] [--steps 40]
    python -m benchmarks.gpu --smoke      # tiny, on CPU: checks the script runs (figures meaningless)

Synthetic tensors are the ceiling of the training step; the real-data run shows what the loader
(decode, landmarks from the cache, augmentation, views, normalisation in ``--workers``
processes) leaves of it. Both go through ``Trainer.fit`` on a ``FERClassifier``; steps are timed
after ``--warmup`` steps by a callback. Landmarks are the template (pre-aligned FER2013 crops) so
that ``prepare_data()`` does not run MTCNN first; the loader's per-item work does not depend on
where the points came from.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table
from lightning_fer import EnsembleModule, FERClassifier, FERDataModule
from lightning_fer.ensemble import HardVote

PARTS = ["left_eye", "right_eye", "nose", "mouth", "rest"]
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def make_clock(warmup: int):
    """A Lightning callback timing training steps from ``warmup`` on (CUDA synchronised)."""
    import lightning as L

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class Clock(L.Callback):
        t0 = t1 = None
        steps = 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                sync()
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx >= warmup:
                sync()
                self.t1 = time.perf_counter()
                self.steps = batch_idx - warmup + 1

    return Clock()


def _trainer(args, clock, precision: str | None = None):
    import lightning as L

    return L.Trainer(accelerator=args.accelerator, devices=1, precision=precision or args.precision, max_epochs=1,
                     limit_train_batches=args.warmup + args.steps, limit_val_batches=0, num_sanity_val_steps=0,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[clock])


def train_synthetic(args, precision: str | None = None, channels_last: bool | None = None) -> float:
    dev = "cuda" if args.accelerator == "gpu" else "cpu"
    g = torch.Generator().manual_seed(0)
    batches = [{"views": torch.randn(args.batch, 1, 3, args.size, args.size, generator=g).to(dev),
                "label": torch.randint(0, 7, (args.batch,), generator=g).to(dev)} for _ in range(4)]
    data = [batches[i % 4] for i in range(args.warmup + args.steps)]
    clock = make_clock(args.warmup)
    cl = args.channels_last if channels_last is None else channels_last
    model = FERClassifier("resnet50", image_size=args.size, class_names=None).set_channels_last(cl)
    _trainer(args, clock, precision).fit(model, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    return clock.steps * args.batch / (clock.t1 - clock.t0)


def _source(args, cache: Path):
    """FER2013 as a folder, or every k-th image of it (``--limit``) as a manifest."""
    if not args.limit:
        return "folder", str(args.root)
    from benchmarks.data_loading import subset_manifest

    return "manifest", str(subset_manifest(args.root, args.limit, cache))


def train_real(args, cache: Path, wire: str = "float32") -> float:
    kind, root = _source(args, cache)
    dm = FERDataModule(kind, root=root, landmarks="template", image_size=args.size,
                       records={"split_map": {"val": "test"} if kind == "folder" else None, "cache_dir": str(cache)},
                       loader={"batch_size": args.batch, "num_workers": args.workers, "wire": wire})
    clock = make_clock(args.warmup)
    model = FERClassifier("resnet50", image_size=args.size, class_names=dm.class_names).set_channels_last(args.channels_last)
    _trainer(args, clock).fit(model, datamodule=dm)
    return clock.steps * args.batch / (clock.t1 - clock.t0)


def ensemble_inference(args, cache: Path) -> tuple[float, float]:
    """Faces/s of a 3-member ensemble on 5 regions: synthetic views on the GPU, and the real
    test loader (FER2013's PublicTest, all five regions cut per face)."""
    dev = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    members = [FERClassifier(b, image_size=args.size, class_names=None) for b in ("inception_v3", "resnet50", "sppnet")]
    ens = EnsembleModule(members, HardVote(), views=PARTS).to(dev).eval()
    dtype = torch.float16 if args.precision == "16-mixed" else torch.bfloat16
    amp = args.precision != "32-true"
    views = torch.randn(args.batch, len(PARTS), 3, args.size, args.size, device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=amp):
        for _ in range(2):
            ens(views)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            ens(views)
        sync()
        synthetic = args.steps * args.batch / (time.perf_counter() - t0)
        kind, root = _source(args, cache)
        dm = FERDataModule(kind, root=root, landmarks="template", views=PARTS, image_size=args.size,
                           records={"split_map": {"val": "test"} if kind == "folder" else None, "cache_dir": str(cache)},
                           loader={"batch_size": args.batch, "num_workers": args.workers})
        dm.prepare_data()
        dm.setup("test")
        loader = dm.test_dataloader()
        n, t0 = 0, None
        for i, batch in enumerate(loader):
            if i == 2:
                sync()
                t0, n = time.perf_counter(), 0
            ens(batch["views"].to(dev, non_blocking=True))
            n += len(batch["label"])
            if i >= args.steps + 2:
                break
        sync()
        real = n / (time.perf_counter() - t0)
    return synthetic, real


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--precision", default="16-mixed")
    ap.add_argument("--channels-last", action="store_true", default=True)
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--limit", type=int, default=0, help="use every k-th FER2013 image, N in all (0: all)")
    ap.add_argument("--smoke", action="store_true", help="tiny run on CPU: checks the script, not the GPU")
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.batch, args.steps, args.warmup, args.workers, args.limit = 80, 4, 2, 1, 0, 300
        args.precision, args.accelerator = "32-true", "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run this on a GPU machine (or --smoke to check it on CPU)")
    else:
        args.accelerator = "gpu"
        torch.backends.cudnn.benchmark = True
    if not (args.root / "train").is_dir():
        raise SystemExit(f"FER2013 not found at {args.root} (train/ and val/ expected); pass --root")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    cache = Path(tempfile.mkdtemp(prefix="fer-gpu-"))
    try:
        rows = []
        t = time.perf_counter()
        syn = train_synthetic(args)
        rows.append(["ResNet50 training, synthetic tensors on the device (ceiling)", syn, "1.00"])
        real = train_real(args, cache)
        rows.append([f"ResNet50 training, FER2013 through FERDataModule ({args.workers} workers)", real,
                     f"{real / syn:.2f}"])
        real8 = train_real(args, cache, wire="uint8")
        rows.append(["  the same with uint8 views on the wire, normalised on the device", real8, f"{real8 / syn:.2f}"])
        ens_syn, ens_real = ensemble_inference(args, cache)
        rows.append(["Ensemble inference, 3 members x 5 regions, synthetic views (faces/s)", ens_syn, "1.00"])
        rows.append(["Ensemble inference, FER2013 PublicTest through the loader (faces/s)", ens_real,
                     f"{ens_real / ens_syn:.2f}"])
        print(f"Machine: {machine()}\n{args.size} px, batch {args.batch}, {args.precision}, channels_last "
              f"{args.channels_last}, {args.steps} timed steps after {args.warmup}; {time.perf_counter() - t:.0f} s\n")
        print(table(["what", "images/s", "vs synthetic"], rows))
        # The fast path against float32 on the same synthetic training step.
        f32 = train_synthetic(args, "32-true", False)
        cmp = [["ResNet50 training, 32-true, contiguous (baseline)", f32, "1.00"]]
        for precision, cl in (("16-mixed" if not args.smoke else "32-true", False),
                              ("16-mixed" if not args.smoke else "32-true", True),
                              ("bf16-mixed", True)):
            v = train_synthetic(args, precision, cl)
            cmp.append([f"ResNet50 training, {precision}, {'channels-last' if cl else 'contiguous'}", v, f"{v / f32:.2f}"])
        print("\n" + table(["what", "images/s", "vs float32"], cmp))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
