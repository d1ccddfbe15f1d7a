"""Run the benchmarks one after another and print their tables.

    python -m benchmarks.run            # the full set (about 20 minutes on 2 cores)
    python -m benchmarks                # the same
    python -m benchmarks.run --quick    # small inputs, a few minutes: checks that they all run
    python -m benchmarks.run --only ensemble training

The data benchmark needs ../shared/data/fer2013 (or --fer2013 PATH) and is skipped without it.
``benchmarks/gpu.py`` (one GPU) and ``benchmarks/fer2013.py`` (the Table II experiment, about an
hour) are run on their own.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks import backbones, data_loading, ensemble, fastpath, options, training  # noqa: E402

DEFAULT_FER2013 = HERE.parents[1] / "shared" / "data" / "fer2013"
NAMES = ["backbones", "training", "ensemble", "options", "fastpath", "data"]


def plans(quick: bool, fer2013: Path) -> dict[str, tuple]:
    if quick:
        return {
            "backbones": (backbones.main, ["--sizes", "80", "--batch", "2", "--steps", "1"]),
            "training": (training.main, ["--backbones", "sppnet", "--size", "48", "--batch", "4", "--steps", "4",
                                         "--warmup", "2", "--rounds", "1"]),
            "ensemble": (ensemble.main, ["--batch", "2", "--size", "80", "--repeats", "1"]),
            "options": (options.main, ["--backbone", "sppnet", "--size", "32", "--batch", "10", "--repeats", "1",
                                       "--no-compile"]),
            "fastpath": (fastpath.main, ["--quick"]),
            "data": (data_loading.main, ["--root", str(fer2013), "--limit", "256", "--batch", "32", "--batches", "2",
                                         "--landmark-images", "16"]),
        }
    return {
        "backbones": (backbones.main, []),
        "training": (training.main, []),
        "ensemble": (ensemble.main, []),
        "options": (options.main, []),
        "fastpath": (fastpath.main, []),
        "data": (data_loading.main, ["--root", str(fer2013)]),
    }


def main(argv: list[str] | None = None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs: a smoke run, not figures to quote")
    ap.add_argument("--only", nargs="+", choices=NAMES)
    ap.add_argument("--fer2013", type=Path, default=DEFAULT_FER2013)
    args = ap.parse_args(argv)
    ran = []
    for name, (fn, fn_args) in plans(args.quick, args.fer2013).items():
        if args.only and name not in args.only:
            continue
        if name == "data" and not (args.fer2013 / "train").is_dir():
            print(f"\n## {name}: skipped, FER2013 not found at {args.fer2013}\n")
            continue
        print(f"\n## {name}{' (quick)' if args.quick else ''}\n", flush=True)
        fn(fn_args)
        ran.append(name)
    return ran


if __name__ == "__main__":
    main()
