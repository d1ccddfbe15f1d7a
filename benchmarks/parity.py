"""Numerical parity of the fast path: one checkpoint's predictions on FER2013's PublicTest in
float32 and with the fast path (bf16 autocast, channels-last), compared face by face.

    python -m benchmarks.parity --ckpt runs/fer2013/resnet18/checkpoints/best.ckpt \\
        [--config configs/fer2013/resnet18.yaml] [--root ../shared/data/fer2013]

Reports the share of faces whose predicted class is the same, the largest and the mean absolute
difference of any class probability, and both accuracies. The goal (issue 13): at least 99.5%
identical predictions.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table  # noqa: E402


def probabilities(model, loader, fast: bool) -> tuple[torch.Tensor, torch.Tensor, float]:
    from lightning_fer.fastpath import FastPath

    fp = FastPath("bf16-mixed" if fast else "32-true", fast, "cpu", "benchmark")
    model = model.to(memory_format=torch.channels_last) if fast else model.to(memory_format=torch.contiguous_format)
    out, labels = [], []
    t0 = time.perf_counter()
    with torch.inference_mode(), fp.autocast():
        for batch in loader:
            x = batch["views"][:, 0]
            x = x.contiguous(memory_format=torch.channels_last) if fast else x
            out.append(model(x).float().softmax(1))
            labels.append(batch["label"])
    return torch.cat(out), torch.cat(labels), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "fer2013" / "resnet18.yaml"))
    ap.add_argument("--root", default=str(HERE.parents[1] / "shared" / "data" / "fer2013"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N test faces (0: all)")
    args = ap.parse_args(argv)
    from lightning_fer import FERClassifier
    from lightning_fer.build import build

    built = build(args.config, {"data": {"init_args": {"root": args.root, "loader": {"batch_size": 128}}},
                                "trainer": {"logger": False, "accelerator": "cpu"}})
    dm = built.datamodule
    dm.prepare_data()
    dm.setup("test")
    if args.limit:
        ds = dm.datasets["test"]
        dm.datasets["test"] = torch.utils.data.Subset(ds, range(min(args.limit, len(ds))))
    model = FERClassifier.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True).eval()
    p32, y, t32 = probabilities(model, dm.loader("test"), fast=False)
    p16, _, t16 = probabilities(model, dm.loader("test"), fast=True)
    same = (p32.argmax(1) == p16.argmax(1)).float().mean().item()
    diff = (p32 - p16).abs()
    acc32, acc16 = [(p.argmax(1) == y).float().mean().item() for p in (p32, p16)]
    print(f"Machine: {machine()}\n{args.ckpt} on {len(y)} PublicTest faces ({args.config})\n")
    print(table(["what", "value"], [
        ["identical predicted class", f"{100 * same:.2f}% ({int(round(same * len(y)))} of {len(y)})"],
        ["largest |probability difference|", f"{diff.max().item():.4f}"],
        ["mean |probability difference|", f"{diff.mean().item():.5f}"],
        ["accuracy float32 (baseline)", f"{100 * acc32:.2f}%"],
        ["accuracy fast path", f"{100 * acc16:.2f}%"],
        ["seconds float32 / fast path", f"{t32:.1f} / {t16:.1f}"],
    ]))


if __name__ == "__main__":
    main()
