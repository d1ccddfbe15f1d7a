"""FER2013 Table II: single networks against their ensembles, on real faces, in one command.

    python benchmarks/fer2013.py                    # 2 CPU cores: about an hour
    python benchmarks/fer2013.py --profile h100     # one H100: larger faces, more epochs (~10 min)

Runs the public CLI twice, ``python -m lightning_fer cv`` with ``configs/fer2013/cv.yaml`` (the
three members trained from scratch on fold 0 of the Training split, twice with seeds 0 and 1,
tested with hard vote, soft vote, calibrated soft vote and stacking on whole faces) and with
``configs/fer2013/cv_regions.yaml`` (the paper's vote of every member on every landmark region),
then writes ``benchmarks/results/fer2013.md``: the data as used (duplicates dropped, counts),
both tables, the wall times, the machine, a reading computed from the figures (best member,
best ensemble, their difference per seed against the spread between seeds), the published
figures for orientation, and the confusion matrices as PNG files beside it.

A run that is interrupted resumes where it stopped (finished members and collected predictions
are kept). Text under a ``## Notes by hand`` heading in the results file is kept when it is
rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "fer2013"
NOTES = "## Notes by hand"
#: Extra overrides per profile, on top of the configs (which are the CPU profile).
PROFILES: dict[str, list[str]] = {
    "cpu": [],
    # One H100: every member at 112 px with mixed precision, 12 epochs, big batches and many
    # loader workers (the loader does ~1,300 faces/s per worker). Not run yet: no GPU was lent.
    "h100": [
        "--trainer.precision=16-mixed",
        "--trainer.max_epochs=12",
        "--data.init_args.train_fraction=1.0",
        "--data.init_args.image_size=112",
        "--data.init_args.batch_size=256",
        "--data.init_args.num_workers=12",
        "--model.init_args.lr=0.002",
        "--model.init_args.channels_last=true",
    ],
}
PUBLISHED = [
    ("Best single CNNs without extra data", "about 73%", "PrivateTest"),
    ("Ensemble, Pramerdorfer & Kampel (2016)", "75.2%", "PrivateTest"),
    ("Residual Masking Network with six other models", "76.8%", "PrivateTest"),
    ("Human accuracy (estimate)", "65 ± 5%", "-"),
]


def _data_summary(root: Path, overrides: list[str]) -> dict:
    """Counts of the splits as the members saw them, and the duplicate report."""
    from lightning_fer.build import build

    dm = build(REPO / "configs/fer2013/resnet50.yaml", overrides).datamodule
    dm.prepare_data()
    dm.setup("fit")
    return {
        "counts": {name: {c: int((ds.labels == k).sum()) for k, c in enumerate(dm.class_names)}
                   for name, ds in dm.datasets.items()},
        "duplicates": str(dm.duplicate_report) if dm.duplicate_report else "kept as they are",
        "duplicates_csv": str(dm.cache_dir / "duplicates.csv"),
        "index": str(dm.index_report),
    }


def _per_seed(rows: dict[str, list[dict]], name: str) -> list[float]:
    return [100 * r["acc"] for r in rows[name]]


def reading(face: dict[str, list[dict]], regions: dict[str, list[dict]], members: list[str]) -> list[str]:
    """Sentences computed from the per-seed figures: best member, best ensemble, the gap per
    seed and the spread between seeds."""
    import numpy as np

    def mean(name, rows):
        return float(np.mean(_per_seed(rows, name)))

    best_member = max(members, key=lambda m: mean(m, face))
    ensembles = [(n, face) for n in face if n not in members] + [(f"{n} on regions", regions) for n in regions
                                                                    if n not in members and "[" not in n]
    best_ens, best_rows = max(ensembles, key=lambda e: mean(e[0].removesuffix(" on regions"), e[1]))
    key = best_ens.removesuffix(" on regions")
    m_seed = _per_seed(face, best_member)
    e_seed = _per_seed(best_rows, key)
    gaps = [e - m for e, m in zip(e_seed, m_seed)]
    spreads = {m: max(_per_seed(face, m)) - min(_per_seed(face, m)) for m in members}
    out = [
        f"- Best member: **{best_member}**, accuracy {', '.join(f'{v:.1f}' for v in m_seed)} % (seeds).",
        f"- Best ensemble: **{best_ens}**, accuracy {', '.join(f'{v:.1f}' for v in e_seed)} % (seeds).",
        f"- Ensemble minus best member, seed by seed: {', '.join(f'{g:+.1f}' for g in gaps)} points.",
        "- Spread between the two seeds (max - min accuracy) of each member: "
        + ", ".join(f"{m} {s:.1f}" for m, s in spreads.items()) + " points.",
    ]
    largest = max(spreads.values())
    if min(gaps) > largest:
        out.append(f"- The gain is larger than every member's seed spread ({largest:.1f} points) in both seeds.")
    elif max(gaps) <= 0:
        out.append("- The best ensemble does not beat the best member in either seed.")
    else:
        out.append(f"- The gain is not beyond the seed spread ({largest:.1f} points): not a clear win.")
    hard = "HardVote"
    if hard in regions:
        out.append(
            f"- The paper's region vote (HardVote over 3 members x 5 regions): "
            f"{', '.join(f'{v:.1f}' for v in _per_seed(regions, hard))} % against the best member's "
            f"{', '.join(f'{v:.1f}' for v in m_seed)} % on whole faces."
        )
    return out


def write_results(path: Path, args, data: dict, face: dict, regions: dict, seconds: dict, members: list[str],
                  pictures: list[Path], member_seconds: dict[str, list[float]]) -> None:
    notes = ""
    if path.is_file():
        text = path.read_text()
        if NOTES in text:
            notes = text[text.index(NOTES):]
    classes = list(next(iter(data["counts"].values())).keys())
    lines = [
        "# FER2013: single networks against ensembles (Table II)",
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `{' '.join(['python', 'benchmarks/fer2013.py', *sys.argv[1:]])}` (profile `{args.profile}`); "
        f"wall time {seconds['total'] / 60:.1f} min in all (training and face ensembles "
        f"{seconds['face'] / 60:.1f} min, region ensembles {seconds['regions'] / 60:.1f} min).",
        "",
        "Members' training time per run (s): "
        + "; ".join(f"{m} {', '.join(f'{s:.0f}' for s in v)}" for m, v in member_seconds.items()) + ".",
        "",
        "## Data",
        "",
        "FER2013 as an image folder: the Training split is cut into 5 stratified folds (no identities exist, so "
        "not subject-disjoint); members train on folds 1-4 and fold 0 validates (best epoch) and is what "
        "stacking and calibration learn from; PublicTest (`val/`) is the test set. The official PrivateTest "
        "split is not available here, so the published figures below are on another split.",
        "",
        f"- Landmarks: {data['index']}",
        f"- Duplicates (by file content, `duplicates: drop`): {data['duplicates']}; every decision in "
        f"`{Path(data['duplicates_csv']).name}` in the cache folder.",
        "",
        "| split | " + " | ".join(classes) + " | total |",
        "|---|" + "---|" * (len(classes) + 1),
    ]
    for split, counts in data["counts"].items():
        lines.append(f"| {split} | " + " | ".join(str(counts[c]) for c in classes) + f" | {sum(counts.values())} |")
    lines += ["", "## Table II: whole faces", "", (args.out / "cv" / "table2.md").read_text().strip(), "",
              "## Table II: the paper's region vote", "",
              "Members trained on whole faces, each applied to the five landmark regions (left eye, right eye, nose, "
              "mouth, rest of the face); the member rows are those members on whole faces, for reference.", "",
              (args.out / "cv_regions" / "table2.md").read_text().strip(), "",
              "Mean ± sample standard deviation over the two seeds (one run per seed).", "",
              "## Reading (computed from the figures)", "", *reading(face, regions, members), "",
              "## Published figures, for orientation (FER2013 PrivateTest, not the split used here)", "",
              "| model | accuracy | split |", "|---|---|---|",
              *[f"| {a} | {b} | {c} |" for a, b, c in PUBLISHED], "",
              "## Confusion matrices (test split, summed over seeds)", "",
              *[f"![{p.stem}]({p.parent.name}/{p.name})" for p in pictures], ""]
    text = "\n".join(lines) + ("\n" + notes if notes else "")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the FER2013 folder (train/, val/)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default runs/fer2013-<profile>)")
    ap.add_argument("--results", type=Path, default=None,
                    help="results file (default benchmarks/results/fer2013.md, fer2013_<profile>.md for others)")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every member, e.g. --trainer.max_epochs=1")
    args = ap.parse_args(argv)
    if not (args.root / "train").is_dir():
        raise SystemExit(f"FER2013 not found at {args.root} (expected train/ and val/ in it); pass --root")
    args.out = args.out or REPO / "runs" / f"fer2013-{args.profile}"
    suffix = "" if args.profile == "cpu" else f"_{args.profile}"
    results = args.results or HERE / "results" / f"fer2013{suffix}.md"
    from lightning_fer.cv import run_config

    overrides = [f"--data.init_args.root={args.root}", "--trainer.enable_progress_bar=false",
                 *PROFILES[args.profile], *args.extra]
    os.chdir(REPO)  # the cv configs name member configs relative to the repository
    seconds = {}
    t0 = time.perf_counter()
    face = run_config("configs/fer2013/cv.yaml", output_dir=str(args.out / "cv"), overrides=overrides)
    seconds["face"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    regions = run_config("configs/fer2013/cv_regions.yaml", output_dir=str(args.out / "cv_regions"),
                         members_dir=str(args.out / "cv"), overrides=overrides)
    seconds["regions"] = time.perf_counter() - t1
    seconds["total"] = time.perf_counter() - t0
    members = ["inception_v3", "resnet50", "sppnet"]
    member_seconds = {m: [json.loads(p.read_text())["seconds"] for p in sorted(args.out.glob(f"cv/fold*/{m}/done.json"))]
                      for m in members}
    data = _data_summary(args.root, overrides)
    pics_dir = results.parent / f"{results.stem}_figures"  # not ".../fer2013/*.png": that reads as data images
    pics_dir.mkdir(parents=True, exist_ok=True)
    pictures = []
    for src, prefix in ((face["pictures"], "faces"), (regions["pictures"], "regions")):
        for p in src:
            if prefix == "regions" and "__" in p.stem:  # single members on single regions: many, skip
                continue
            if prefix == "regions" and p.stem.removeprefix("confusion_") in members:
                continue  # the same members on whole faces are in the faces set already
            dst = pics_dir / f"{prefix}_{p.name}"
            shutil.copyfile(p, dst)
            pictures.append(dst)
    write_results(results, args, data, face["rows"], regions["rows"], seconds, members, pictures, member_seconds)
    print(f"\nwrote {results} ({seconds['total'] / 60:.1f} min)")
    return results


if __name__ == "__main__":
    main()
