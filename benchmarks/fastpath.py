"""The fast path against float32, side by side in one run: matrix-multiply peaks, training steps,
ensemble and member inference (with ONNX Runtime on the exported model), and the loader's wire.

    python -m benchmarks.fastpath [--quick]

Headed by the machine, its CPU flags and what ``--fast_path auto`` chooses on it. "fast path"
rows run bf16 autocast with channels-last memory (what ``auto`` picks on a CPU with bf16 matrix
units, and ``--fast_path on`` forces elsewhere): on a CPU without those units they show what the
choice would cost, which is why ``auto`` leaves such CPUs in float32.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, median_time, table
from benchmarks.ensemble import PARTS, flops
from benchmarks.training import _batches, lightning_loop
from lightning_fer import EnsembleModule, FERClassifier
from lightning_fer.fastpath import BF16_FLAGS, choose, cpu_flags, describe


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / median_time(lambda: a @ b, repeats) / 1e9


def training_rows(specs, steps: int, warmup: int) -> list[list]:
    rows = []
    for name, size, batch in specs:
        data = _batches(steps, batch, size)
        base = lightning_loop(name, size, data, warmup, "32-true")
        fast = lightning_loop(name, size, data, warmup, "bf16-mixed", channels_last=True)
        rows.append([f"{name} {size} px, batch {batch}", batch / base, batch / fast, f"{base / fast:.2f}"])
    return rows


def ensemble_rows(size: int, batch: int, repeats: int, peaks: dict[str, float]) -> tuple[list[list], list[str]]:
    torch.manual_seed(0)
    members = [FERClassifier(b, image_size=size, class_names=None) for b in ("inception_v3", "resnet50", "sppnet")]
    plain = EnsembleModule(members, views=PARTS).eval()
    views = torch.randn(batch, len(PARTS), 3, size, size)
    with torch.inference_mode():
        work = flops(lambda: plain(views))
        t32 = median_time(lambda: plain(views), repeats)
    fast = EnsembleModule(members, views=PARTS).set_channels_last(True).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        t16 = median_time(lambda: fast(views), repeats)
    t_ort = onnx_time(plain, views, repeats)
    rows = [["ensemble float32 (baseline)", batch / t32, work / t32 / 1e9, f"{work / t32 / 1e9 / peaks['float32']:.2f} of float32",
             "1.00"],
            ["ensemble fast path (bf16 autocast, channels-last)", batch / t16, work / t16 / 1e9,
             f"{work / t16 / 1e9 / peaks['bfloat16']:.2f} of bf16", f"{t32 / t16:.2f}"]]
    if t_ort:
        rows.append(["ensemble exported, ONNX Runtime (float32)", batch / t_ort, work / t_ort / 1e9,
                     f"{work / t_ort / 1e9 / peaks['float32']:.2f} of float32", f"{t32 / t_ort:.2f}"])
    return rows, [f"{batch} faces x 5 regions at {size} px; {work / 1e9:.1f} GFLOP per batch"]


def member_rows(size: int, batch: int, repeats: int) -> list[list]:
    torch.manual_seed(0)
    model = FERClassifier("resnet18", image_size=size, class_names=None).eval()
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        t32 = median_time(lambda: model(x), repeats)
    fast = FERClassifier("resnet18", image_size=size, class_names=None).set_channels_last(True).eval()
    fast.load_state_dict(model.state_dict())
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        t16 = median_time(lambda: fast(xc), repeats)
    rows = [[f"resnet18 {size} px, batch {batch}: eager float32 (baseline)", batch / t32, "1.00"],
            ["  fast path (bf16 autocast, channels-last)", batch / t16, f"{t32 / t16:.2f}"]]
    t_ort = onnx_time(model, x, repeats)
    if t_ort:
        rows.append(["  exported, ONNX Runtime (float32)", batch / t_ort, f"{t32 / t_ort:.2f}"])
    return rows


def onnx_time(module, x: torch.Tensor, repeats: int) -> float | None:
    """Median seconds of ONNX Runtime on ``module`` exported by :func:`lightning_fer.export.export`."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from lightning_fer.export import export

    with tempfile.TemporaryDirectory() as d:
        try:
            path, _ = export(module, Path(d) / "model.onnx", "onnx", example=x[:2])
        except Exception as err:  # noqa: BLE001 - reported in the table's place
            print(f"(ONNX export failed: {type(err).__name__}: {str(err).splitlines()[0][:200]})", file=sys.stderr)
            return None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {"input": x.numpy()}
        return median_time(lambda: sess.run(None, feed), repeats)


def wire_rows(batches: int, workers: int) -> list[list]:
    """The loader's images/s with float32 views against uint8 views normalised after the loader."""
    from lightning_fer import FERDataModule
    from lightning_fer.data.sources import SyntheticSource
    from lightning_fer.data.transforms import normalize_batch

    root = tempfile.mkdtemp()
    src = SyntheticSource(root, num_subjects=12, images_per_class=6, test_subjects=2, image_size=128)
    out = {}
    for wire in ("float32", "uint8"):
        dm = FERDataModule(src, views=list(PARTS), image_size=64, records={"cache_dir": os.path.join(root, "cache")},
                           loader={"batch_size": 32, "num_workers": workers, "wire": wire})
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.loader("train", True)
        it = iter(loader)
        next(it)  # workers up
        t0, n = time.perf_counter(), 0
        for _ in range(batches):
            try:
                b = normalize_batch(next(it))
            except StopIteration:
                it = iter(loader)
                b = normalize_batch(next(it))
            n += len(b["label"])
        out[wire] = n / (time.perf_counter() - t0)
    return [[f"float32 views from {workers} workers (baseline)", out["float32"], "1.00"],
            [f"uint8 views from {workers} workers, normalised after", out["uint8"], f"{out['uint8'] / out['float32']:.2f}"]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs: a smoke run, not figures to quote")
    ap.add_argument("--train", nargs="+", default=["resnet50:224:16", "resnet50:64:64", "resnet18:48:64"],
                    help="backbone:px:batch cases of the training table")
    ap.add_argument("--steps", type=int, default=16, help="training steps per case (3 untimed)")
    ap.add_argument("--ensemble-batch", type=int, default=16)
    ap.add_argument("--matmul", type=int, default=2048, help="side of the matrices of the peak")
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    q = args.quick
    reps = 1 if q else 5
    flags = cpu_flags()
    print(f"Machine: {machine()}")
    print(f"bf16 matrix-unit flags ({', '.join(BF16_FLAGS)}): {', '.join(sorted(flags & set(BF16_FLAGS))) or 'none'}; "
          f"AVX-512: {'yes' if 'avx512f' in flags else 'no'}; {describe(choose('auto', 'cpu'))}\n")
    n = 256 if q else args.matmul
    peaks = {"float32": matmul_gflops(n, torch.float32, reps), "bfloat16": matmul_gflops(n, torch.bfloat16, reps)}
    print(table(["matrix multiply", "GFLOP/s", "vs float32"],
                [[f"{n}x{n} float32 (baseline)", peaks["float32"], "1.00"],
                 [f"{n}x{n} bfloat16", peaks["bfloat16"], f"{peaks['bfloat16'] / peaks['float32']:.2f}"]]))
    specs = [("sppnet", 32, 8)] if q else [tuple(s.split(":")) for s in args.train]
    specs = [(name, int(size), int(batch)) for name, size, batch in specs]
    print("\nTraining under Trainer.fit (images/s; fast path: bf16-mixed, channels-last)\n")
    print(table(["model", "float32 img/s (baseline)", "fast path img/s", "speed-up"],
                training_rows(specs, 5 if q else args.steps, 2 if q else 3)))
    # 128 px: SPP-net's adaptive max pooling exports to ONNX only where its grid divides the feature map
    # (8x8 here), and Inception V3 needs at least 75 px.
    rows, notes = ensemble_rows(128, 2 if q else args.ensemble_batch, reps, peaks)
    print(f"\nEnsemble inference ({notes[0]})\n")
    print(table(["what", "faces/s", "GFLOP/s", "share of the peak", "speed-up"], rows))
    print("\nMember inference, as predict runs it (images/s)\n")
    print(table(["what", "images/s", "speed-up"], member_rows(48, 8 if q else 64, reps)))
    print("\nThe wire: loader images/s, 5 region views at 64 px, augmentation on\n")
    print(table(["what", "images/s", "ratio"], wire_rows(3 if q else 40, 0 if q else 2)))


if __name__ == "__main__":
    main()
