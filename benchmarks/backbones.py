"""Training and inference images/s of each backbone at 112 and 224 px on this machine.

    python -m benchmarks.backbones [--sizes 112 224] [--batch 16] [--steps 3]

Training is a full step (forward, cross-entropy, backward, AdamW) of a FERClassifier's backbone;
inference is a forward pass under ``torch.inference_mode`` in eval mode. ResNet50 is the baseline
the ratios refer to.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from benchmarks.common import Timer, machine, table  # noqa: E402
from lightning_fer.models.backbones import create_backbone  # noqa: E402

BACKBONES = ["resnet50", "inception_v3", "sppnet"]


def measure(name: str, size: int, batch: int, steps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    net = create_backbone(name, num_classes=7, image_size=size)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 7, (batch,))

    def train_step():
        out = net(x)
        logits = out[0] if isinstance(out, tuple) else out
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    net.train()
    train_step()  # warm-up
    with Timer() as t:
        for _ in range(steps):
            train_step()
    train_ips = batch * steps / t.seconds
    net.eval()
    with torch.inference_mode():
        net(x)
        with Timer() as t:
            for _ in range(steps):
                net(x)
    return train_ips, batch * steps / t.seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--backbones", nargs="+", default=BACKBONES)
    args = ap.parse_args(argv)
    print(f"Machine: {machine()}\nbatch {args.batch}, {args.steps} timed steps after one warm-up, float32\n")
    rows = []
    for size in args.sizes:
        base = None
        for name in args.backbones:
            tr, inf = measure(name, size, args.batch, args.steps)
            if name == "resnet50":
                base = (tr, inf)
            ratio = f"{tr / base[0]:.2f} / {inf / base[1]:.2f}" if base else "-"
            rows.append([name, size, tr, inf, ratio])
            print(f"  {name} {size}px: train {tr:.1f} img/s, inference {inf:.1f} img/s", file=sys.stderr)
    print(table(["backbone", "px", "train img/s", "inference img/s", "vs resnet50 (train / inference)"], rows))


if __name__ == "__main__":
    main()
