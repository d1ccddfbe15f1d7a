"""Which speed options pay on this machine: each measured against the plain setting in the same
run, on the same model and inputs.

    python -m benchmarks.options [--backbone resnet50] [--size 64] [--batch 32] [--repeats 5]

Inference (eval mode): ``torch.no_grad`` (baseline) against ``torch.inference_mode``,
channels-last memory format, ``torch.compile`` (its compile time reported apart), the five
region views of a face in one batch against one call per view, and the four parts at half the
side. Training (one step: forward, loss, backward, AdamW): contiguous (baseline) against
channels-last. Times are medians of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, median_time, table
from lightning_fer.models.backbones import create_backbone


def _net(name: str, size: int, channels_last: bool = False):
    torch.manual_seed(0)
    net = create_backbone(name, num_classes=7, image_size=size)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def inference_rows(name: str, size: int, batch: int, repeats: int, compile_: bool) -> list[list]:
    x = torch.randn(batch, 3, size, size)
    net = _net(name, size).eval()
    rows = []
    with torch.no_grad():
        base = median_time(lambda: net(x), repeats)
    rows.append(["inference: torch.no_grad, contiguous (baseline)", base * 1000, batch / base, "1.00"])
    with torch.inference_mode():
        t = median_time(lambda: net(x), repeats)
    rows.append(["inference: torch.inference_mode", t * 1000, batch / t, f"{base / t:.2f}"])
    cl = _net(name, size, channels_last=True).eval()
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        t = median_time(lambda: cl(xc), repeats)
    rows.append(["inference: channels_last (+ inference_mode)", t * 1000, batch / t, f"{base / t:.2f}"])
    if compile_:
        compiled = torch.compile(_net(name, size).eval())
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled(x)
            first = time.perf_counter() - t0
            t = median_time(lambda: compiled(x), repeats)
        rows.append([f"inference: torch.compile (compiling took {first:.0f} s)", t * 1000, batch / t, f"{base / t:.2f}"])
    # The five region views of `batch // 5` faces: one batch against one call per view, and the
    # four parts at half the side (the rest of the face stays full size).
    faces = max(batch // 5, 1)
    views = torch.randn(faces, 5, 3, size, size)
    half = torch.randn(faces * 4, 3, size // 2, size // 2)
    with torch.inference_mode():
        t_loop = median_time(lambda: [net(views[:, v]) for v in range(5)], repeats)
        t_one = median_time(lambda: net(views.reshape(-1, 3, size, size)), repeats)
        t_half = median_time(lambda: (net(half), net(views[:, 4])), repeats)
    rows.append([f"5 views of {faces} faces: one call per view (baseline)", t_loop * 1000, faces / t_loop, "1.00"])
    rows.append(["5 views in one batch", t_one * 1000, faces / t_one, f"{t_loop / t_one:.2f}"])
    rows.append([f"4 parts at {size // 2} px + rest at {size} px, one call each", t_half * 1000, faces / t_half,
                 f"{t_loop / t_half:.2f}"])
    return rows


def training_rows(name: str, size: int, batch: int, repeats: int) -> list[list]:
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 7, (batch,))
    rows = []
    base = None
    for label, cl in (("training step: contiguous (baseline)", False), ("training step: channels_last", True)):
        net = _net(name, size, channels_last=cl).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        xin = x.contiguous(memory_format=torch.channels_last) if cl else x

        def step(net=net, opt=opt, xin=xin):
            out = net(xin)
            loss = F.cross_entropy(out[0] if isinstance(out, tuple) else out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t = median_time(step, repeats)
        base = base or t
        rows.append([label, t * 1000, batch / t, f"{base / t:.2f}"])
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (it needs a C++ compiler)")
    args = ap.parse_args(argv)
    rows = inference_rows(args.backbone, args.size, args.batch, args.repeats, not args.no_compile)
    rows += training_rows(args.backbone, args.size, args.batch, args.repeats)
    print(f"Machine: {machine()}\n{args.backbone}, batch {args.batch} at {args.size} px, float32, "
          f"median of {args.repeats} after a warm-up\n")
    print(table(["option", "ms per call", "images (faces) /s", "speed-up vs its baseline"], rows))


if __name__ == "__main__":
    main()
