"""Training overhead: a ``FERClassifier`` step under a Lightning ``Trainer`` against a
hand-written PyTorch loop on the same model, batch, optimiser and precision.

    python -m benchmarks.training [--backbones resnet50 sppnet] [--size 64] [--batch 32] [--steps 20]

Both read the same batches from memory (so the data pipeline is not measured here: see
data_loading.py) and run forward, cross-entropy with label smoothing, backward and AdamW, with
the cosine schedule stepped per batch. The hand-written loop is the baseline; the Lightning
run adds what the library does each step (logging the loss and the training accuracy, hooks).
Each is timed from its ``--warmup``-th step on, twice, alternating; the best of the two counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table
from lightning_fer import FERClassifier


def _batches(n: int, batch: int, size: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"views": torch.randn(batch, 1, 3, size, size, generator=g),
             "label": torch.randint(0, 7, (batch,), generator=g)} for _ in range(n)]


def _model(name: str, size: int, channels_last: bool = False) -> FERClassifier:
    torch.manual_seed(0)
    return FERClassifier(name, image_size=size, loss={"label_smoothing": 0.1}, class_names=None).set_channels_last(channels_last)


def hand_loop(name: str, size: int, data: list[dict], warmup: int) -> float:
    """Seconds per step of a plain loop: the baseline."""
    model = _model(name, size)
    net = model.backbone.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(data))
    t0 = None
    for i, b in enumerate(data):
        if i == warmup:
            t0 = time.perf_counter()
        out = net(b["views"][:, 0])
        logits = out[0] if isinstance(out, tuple) else out
        loss = F.cross_entropy(logits, b["label"], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return (time.perf_counter() - t0) / (len(data) - warmup)


def lightning_loop(name: str, size: int, data: list[dict], warmup: int, precision: str = "32-true",
                   channels_last: bool = False) -> float:
    """Seconds per step of ``Trainer.fit`` on a FERClassifier (no logger, checkpoint or bar)."""
    import lightning as L

    class Clock(L.Callback):
        t0 = t1 = None

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.t1 = time.perf_counter()

    clock = Clock()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[clock], num_sanity_val_steps=0, limit_val_batches=0)
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False)
    trainer.fit(_model(name, size, channels_last), train_dataloaders=loader)
    return (clock.t1 - clock.t0) / (len(data) - warmup)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["resnet50", "sppnet"])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    data = _batches(args.steps, args.batch, args.size)
    rows = []
    for name in args.backbones:
        hand, light = [], []
        for _ in range(args.rounds):  # alternate, so that drifts in the machine hit both
            hand.append(hand_loop(name, args.size, data, args.warmup))
            light.append(lightning_loop(name, args.size, data, args.warmup))
        h, lt = min(hand), min(light)
        rows.append([name, args.size, args.batch, h * 1000, lt * 1000, args.batch / h, args.batch / lt,
                     f"{(lt / h - 1) * 100:+.1f}%"])
        print(f"  {name}: hand {h * 1000:.0f} ms/step, Lightning {lt * 1000:.0f} ms/step", file=sys.stderr)
    print(f"Machine: {machine()}\nfloat32, {args.steps - args.warmup} timed steps after {args.warmup}, "
          f"best of {args.rounds} alternating rounds\n")
    print(table(["backbone", "px", "batch", "hand-written ms/step (baseline)", "FERClassifier + Trainer ms/step",
                 "hand img/s", "Lightning img/s", "overhead"], rows))


if __name__ == "__main__":
    main()
