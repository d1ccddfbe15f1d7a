"""Behaviour before and after a change, on the same machine, one after the other: the Quickstart's
test figures, ``cv_quick``'s Table II figure by figure, and the shipped models' PublicTest figures.

    python -m benchmarks.behaviour --before 01ed269                 # that commit against this working tree
    python -m benchmarks.behaviour --before 01ed269 --after HEAD    # two commits (edit on while it runs)
    python -m benchmarks.behaviour --before 01ed269 --cases shipped # only the shipped models

The commits are checked out with ``git worktree`` into a temporary folder; each case runs there
as a user would run it (``python -m lightning_fer ...``, the folder's own package first on the
path, a separate ``$LIGHTNING_FER_HOME`` for each side so that no cache written by one is read by the
other). Every figure is printed side by side with the difference; the table goes to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, table

REPO = Path(__file__).resolve().parents[1]
FER2013 = REPO.parent / "shared" / "data" / "fer2013"
SHIPPED = ("fer2013", "fer2013-fast", "fer2013-ensemble")
#: Lightning's printed test table: ``│  test/acc  │  0.5523...  │`` (rich) or ``test/acc  0.5523`` (plain)
METRIC = re.compile(r"(test/[a-z_0-9]+)\W+([0-9]*\.[0-9]+)")


def _run(folder: Path, home: Path, args: list[str]) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(folder), "LIGHTNING_FER_HOME": str(home), "NO_ALBUMENTATIONS_UPDATE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lightning_fer", *args], cwd=folder, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{folder}: python -m lightning_fer {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr, time.perf_counter() - t0


def printed_figures(output: str) -> dict[str, float]:
    """The test metrics Lightning printed last (``test/acc`` ... as fractions).

    Example:
        >>> printed_figures("│        test/acc         │    0.5523809790611267     │\\n test/f1_macro  0.5")
        {'test/acc': 0.5523809790611267, 'test/f1_macro': 0.5}
    """
    found: dict[str, float] = {}
    for name, value in METRIC.findall(output):
        found[name] = float(value)
    return found


def quickstart(folder: Path, home: Path) -> dict[str, float]:
    out, seconds = _run(folder, home, ["fit", "--config", "configs/demo/resnet50.yaml"])
    return {**printed_figures(out), "seconds": seconds}


def cv_quick(folder: Path, home: Path) -> dict[str, float]:
    shutil.rmtree(folder / "runs" / "demo" / "cv_quick", ignore_errors=True)  # train, do not resume
    _, seconds = _run(folder, home, ["cv", "--config", "configs/demo/cv_quick.yaml"])
    with open(folder / "runs" / "demo" / "cv_quick" / "table2_runs.csv") as f:
        rows = list(csv.DictReader(f))
    return {**{f"{r['model']} acc": float(r["acc"]) for r in rows}, "seconds": seconds}


def shipped(folder: Path, home: Path) -> dict[str, float]:
    figures = {}
    for name in SHIPPED:
        out, _ = _run(folder, home, ["test", "--pretrained", name, f"--data.root={FER2013}",
                                     "--trainer.enable_progress_bar=false"])
        figures.update({f"{name} {k}": v for k, v in printed_figures(out).items() if k in ("test/acc", "test/f1")})
    return figures


CASES = {"quickstart": quickstart, "cv_quick": cv_quick, "shipped": shipped}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the commit to compare against")
    ap.add_argument("--after", default=None, help="a commit (default: this working tree, as it is when each case starts)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", default=None, help="write the table here too (Markdown)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="behaviour-"))
    sides = {"before": work / "before", "after": work / "after" if args.after else REPO}
    for side, rev in (("before", args.before), ("after", args.after)):
        if rev:
            subprocess.run(["git", "worktree", "add", "--detach", str(sides[side]), rev], cwd=REPO, check=True,
                           capture_output=True)
    rows = []
    try:
        for case in args.cases:
            figures = {}
            for side, folder in sides.items():
                figures[side] = CASES[case](folder, work / f"home-{side}")
                print(f"{case} {side}: {figures[side]}", flush=True)
            for key in figures["before"]:
                b, a = figures["before"][key], figures["after"].get(key)
                same = "" if key == "seconds" else ("same" if a == b else f"{a - b:+.4f}" if a is not None else "missing")
                rows.append([case, key, f"{b:.4f}", "-" if a is None else f"{a:.4f}", same])
    finally:
        for folder in sides.values():
            if folder != REPO:
                subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, capture_output=True)
    text = (f"# Behaviour before ({args.before}) and after ({args.after or 'the working tree'})\n\n"
            f"Machine: {machine()}\n\n"
            + table(["case", "figure", "before", "after", "difference"], rows) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
