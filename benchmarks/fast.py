"""The recipe of the shipped ``fer2013-fast`` (issue 36): the shipped ``fer2013``'s soft targets on
FER2013 Training (the face and its mirror, no augmentation), then ``fit`` of
``configs/fer2013/fast_member.yaml`` on them (resumable: a killed run goes on from its last epoch), which
tests the final weights on PublicTest.

    python -m benchmarks.fast             # targets (once), then fit or resume, then PublicTest
    python -m benchmarks.fast --targets   # the soft targets only

Shipping it (a bundle with its hash in ``models.json``, its int8 version checked on PublicTest) is
``python -m benchmarks.ship`` with ``--fast``, then ``python -m benchmarks.ship_int8``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIG = REPO / "configs" / "fer2013" / "fast_member.yaml"
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def targets(config: Path = CONFIG, teacher: str = "fer2013", batch_size: int = 256) -> Path:
    """The teacher's soft targets where ``config``'s ``distill.teacher`` says, on the training images
    of ``config``'s data (built as the student's own, so that their fingerprints match)."""
    import lightning_fer
    from lightning_fer.build import build
    from lightning_fer.ensemble.members import MemberNet
    from lightning_fer.ensemble.net import EnsembleNet
    from lightning_fer.models.distill import write_soft_targets

    built = build(config, {"data": {"init_args": {"training": {"augment": False}, "loader": {"batch_size": batch_size}}},
                           "trainer": {"logger": False}})
    path = REPO / built.model.distill.teacher
    if path.is_file():
        return path
    dm = built.datamodule
    dm.prepare_data()
    dm.setup("fit")
    net = EnsembleNet([MemberNet.from_classifier(lightning_fer.pretrained(teacher), teacher)], views=["face"],
                      image_size=dm.image_size, flip=True).eval()
    t = time.perf_counter()
    write_soft_targets(net, dm, path, [f"pretrained:{teacher}"])
    print(f"soft targets of {teacher} (face + mirror) on {len(dm.splits['train'])} training images in "
          f"{time.perf_counter() - t:.0f} s: {path}", flush=True)
    return path


def fit(config: Path = CONFIG) -> int:
    """``python -m lightning_fer fit --config config``, from its last epoch's checkpoint where one
    was left by an unfinished run."""
    from lightning_fer.build import build

    root = Path(build(config, {"trainer": {"logger": False}}).trainer.default_root_dir)
    last = REPO / root / "checkpoints" / "final.ckpt"
    cmd = [sys.executable, "-m", "lightning_fer", "fit", "--config", str(config)]
    if last.is_file() and not (REPO / root / "done").is_file():
        cmd.append(f"--ckpt_path={last}")
    t = time.perf_counter()
    rc = subprocess.run(cmd, cwd=REPO).returncode
    if rc == 0:
        (REPO / root / "done").write_text(f"{time.perf_counter() - t:.0f} s\n")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--targets", action="store_true", help="write the soft targets and stop")
    args = ap.parse_args(argv)
    targets(args.config)
    return 0 if args.targets else fit(args.config)


if __name__ == "__main__":
    raise SystemExit(main())
