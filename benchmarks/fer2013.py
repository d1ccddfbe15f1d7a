"""FER2013 Table II: single networks against their ensembles, on real faces: a thin driver of the
public ``cv`` profiles.

    python -m benchmarks.fer2013                    # 2 CPU cores: about 3 h, resumable
    python -m benchmarks.fer2013 --seeds 0          # one seed of the faces, then the regions
    python -m benchmarks.fer2013 --profile h100     # one H100: every member at 112 px, 12 epochs
    python -m benchmarks.fer2013 --report-only      # rewrite the results file from a finished run

The steps, each one ``python -m lightning_fer cv --config ...`` call (resumable: finished members
and collected predictions are kept):

1. ``configs/fer2013/cv.yaml`` seed by seed: five whole-face members (the paper's three and the
   two cheap backbones) and two bagged copies of the quick member, every strategy over all of
   them, over the cheap ones and over the paper's three, with flip TTA;
2. ``configs/fer2013/cv_regions.yaml``: the same members (shared folder) on Dlib's regions, with
   region experts;
3. ``configs/fer2013/cv_regions_mtcnn.yaml``: the same on MTCNN's regions.

Everything in ``benchmarks/results/fer2013.md`` is computed from the runs' structured rows
(``table2_runs.csv``, read by :func:`lightning_fer.cv.report.read_records`) and their members'
``done.json``; nothing is parsed out of row names. Text under ``## Notes by hand`` is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "fer2013"
NOTES = "## Notes by hand"
#: the paper's three, by their member names in configs/fer2013/cv.yaml
PAPER = ["sppnet_small", "resnet50_small", "inception_v3_small"]
#: step -> (cv config, run folder name; the faces' folder holds every member)
STEPS = {"faces": ("configs/fer2013/cv.yaml", "cv"), "regions": ("configs/fer2013/cv_regions.yaml", "cv_regions"),
         "regions_mtcnn": ("configs/fer2013/cv_regions_mtcnn.yaml", "cv_regions_mtcnn")}
#: extra overrides per profile, after the configs' own (the cpu profile is the configs as they are)
PROFILES: dict[str, list[str]] = {
    "cpu": [],
    # One H100: every member at 112 px with mixed precision (the fast path chooses it), 12 epochs
    # on all training folds, big batches, many loader workers. Not run: no GPU was lent.
    "h100": ["--trainer.max_epochs=12", "--data.init_args.image_size=112", "--data.init_args.loader.batch_size=256",
             "--data.init_args.loader.num_workers=12"],
}
#: cv.yaml's per-member budget, replaced per profile (``None``: the configs' own)
MEMBER_OVERRIDES: dict[str, dict | None] = {"cpu": None, "h100": {}}
PUBLISHED = [
    ("Best single CNNs without extra data", "about 73%", "PrivateTest"),
    ("Ensemble, Pramerdorfer & Kampel (2016)", "75.2%", "PrivateTest"),
    ("Residual Masking Network with six other models", "76.8%", "PrivateTest"),
    ("Human accuracy (estimate)", "65 ± 5%", "-"),
]
REGION_GROUPS = ("faces", "regions", "experts", "faces + experts")
#: the member config the region experts are trained from (cv_regions*.yaml's expert_members)
EXPERT_RECIPE = "quick_member"


def steps(seeds: list[int], regions: bool = True, mtcnn: bool = True) -> list[tuple[str, list[int]]]:
    """The calls: the faces seed by seed (each call covers the seeds so far, so the results grow a
    seed at a time), then the regions on the first seed, Dlib's and then MTCNN's.

    Example:
        >>> steps([0, 1])
        [('faces', [0]), ('faces', [0, 1]), ('regions', [0]), ('regions_mtcnn', [0])]
    """
    out = [("faces", seeds[: i + 1]) for i in range(len(seeds))]
    return out + ([("regions", seeds[:1])] if regions else []) + ([("regions_mtcnn", seeds[:1])] if mtcnn else [])


def step_name(what: str, seeds: list[int]) -> str:
    """A step's key in ``wall.json``: ``faces seed 1`` is the call that ran seeds up to 1."""
    return f"{what} seed {seeds[-1]}"


def unfinished(path: Path, todo: list[tuple[str, list[int]]]) -> list[str]:
    """The steps of ``todo`` with no wall time in ``path`` (``wall.json``: a step is recorded when it ends)."""
    wall = json.loads(path.read_text()) if path.is_file() else {}
    return [step_name(*step) for step in todo if step_name(*step) not in wall]


def add_wall(path: Path, step: str, seconds: float) -> dict[str, float]:
    """Add ``seconds`` to ``step`` in the run folder's ``wall.json`` (every call's wall time per
    step, so a resumed experiment still reports what it cost in all); return the whole record."""
    from lightning_fer.files import write_text

    wall = json.loads(path.read_text()) if path.is_file() else {}
    wall[step] = wall.get(step, 0.0) + seconds
    write_text(path, json.dumps(wall, indent=1))
    return wall


def command_line(argv: list[str]) -> str:
    """The call as a reader would type it: this machine's absolute paths become ``<option>``."""
    words = [f"<{prev.lstrip('-')}>" if os.path.isabs(w) and prev.startswith("--") else w
             for prev, w in zip(["", *argv], argv)]
    return " ".join(["python", "-m", "benchmarks.fer2013", *words])


# -- reading the structured rows -----------------------------------------------------------------
def by_seed(records: list[dict], model: str, metric: str = "acc") -> dict:
    return {r["seed"]: r[metric] for r in records if r["model"] == model}


def pct(values) -> str:
    return ", ".join(f"{100 * v:.1f}" for v in values)


def signed(values) -> str:
    return ", ".join(f"{100 * v:+.2f}" for v in values)


def section(records: list[dict], keep) -> list[str]:
    """Markdown of the rows ``keep(record)`` selects (by their columns), with accuracy per seed."""
    from lightning_fer.cv.report import COLUMNS, markdown_table, summary_of

    chosen = [r for r in records if keep(r)]
    if not chosen:
        return []
    summary = summary_of(chosen)
    cols = [c for c in COLUMNS if c[0] in ("acc", "balanced_acc", "f1", "ece", "nll")]
    lines = markdown_table(summary, None, cols).rstrip("\n").split("\n")
    lines[0] += " accuracy per seed |"
    lines[1] += "---|"
    for i, (name, *_rest) in enumerate(summary):
        lines[i + 2] += f" {pct(by_seed(chosen, name).values())} |"
    return lines + [""]


def selective_section(records: list[dict], names: list[str]) -> list[str]:
    from lightning_fer.cv.report import COLUMNS, markdown_table, summary_of

    summary = [s for s in summary_of(records) if s[0] in names]
    cols = [c for c in COLUMNS if c[0] in ("acc", "acc90_conf", "acc80_conf", "acc90_agree", "acc80_agree")]
    return markdown_table(summary, None, cols).rstrip("\n").split("\n") + [""]


def member_minutes(members_dir: Path, seeds: list[int]) -> dict[str, list[float]]:
    """Training minutes per member and seed, from each member's ``done.json`` (a resumed
    member's attempts added up)."""
    out: dict[str, list[float]] = {}
    for s in seeds:
        for done in sorted((members_dir / f"fold0-seed{s}").glob("*/done.json")):
            out.setdefault(done.parent.name, []).append(json.loads(done.read_text())["seconds"] / 60)
    return out


def reading(faces: list[dict], regions: dict[str, list[dict]]) -> tuple[list[str], list[tuple[str, str, str]], str]:
    """The sentences, the goal checks and the one gains line, from the structured rows alone."""
    from lightning_fer.cv.report import ensemble_gains

    said: list[str] = []
    goals: list[tuple[str, str, str]] = []
    g = ensemble_gains(faces, include=PAPER)
    seeds = g["seeds"]
    line = f"ensemble minus best member, seed by seed: {signed(g['gain_by_seed'])}"
    said.append(f"- Best single member on the same views: **{g['member']}**, {pct(g['member_by_seed'])} % seed by seed. "
                f"Best ensemble with the paper's three among its voters: **{g['ensemble']}**, "
                f"{pct(g['ensemble_by_seed'])} %: {signed(g['gain_by_seed'])} points.")
    members = sorted({r["model"] for r in faces if r["kind"] == "member" and r["flip"] == g["flip"]})
    spread = {m: max(v) - min(v) for m in members if len(v := list(by_seed(faces, m).values())) > 1}
    if spread:
        largest = max(spread.values())
        verdict = ("larger than every member's seed spread" if min(g["gain_by_seed"]) > largest else
                   "not beyond the largest seed spread of a member")
        said.append(f"- Seed spread (max - min accuracy) of the members: up to {100 * largest:.1f} points; the gain is "
                    f"{verdict}.")
    met = len(seeds) > 1 and min(g["gain_by_seed"]) >= 0.02
    goals.append(("Best ensemble with the paper's three >= +2.0 points over the best member, each seed",
                  f"{g['ensemble']}: {signed(g['gain_by_seed'])}", "met" if met else
                  ("one seed only" if len(seeds) < 2 and min(g["gain_by_seed"]) >= 0.02 else "missed")))
    best_any = max({r["model"] for r in faces if r["kind"] == "strategy"},
                   key=lambda n: float(np.mean(list(by_seed(faces, n).values()))))
    top = float(np.mean(list(by_seed(faces, best_any).values())))
    goals.append(("Moonshot: an ensemble >= 74%", f"{best_any}: {100 * top:.1f}%", "met" if top >= 0.74 else "missed"))
    # Ensemble selection against stacking, over the same voters.
    for group in dict.fromkeys(r["group"] for r in faces if r["strategy"] == "EnsembleSelection"):
        sel = [r for r in faces if r["strategy"] == "EnsembleSelection" and r["group"] == group]
        stk = [r for r in faces if r["strategy"] == "Stacking" and r["group"] == group]
        if sel and stk:
            a, b = by_seed(faces, sel[0]["model"]), by_seed(faces, stk[0]["model"])
            d = [a[s] - b[s] for s in a if s in b]
            said.append(f"- Ensemble selection minus stacking over {group}: {signed(d)} points seed by seed.")
            if group == "all views":
                goals.append(("Ensemble selection at least as good as stacking (all members)", signed(d),
                              "met" if min(d) >= 0 else "missed, difference said"))
    # The paper's region vote and region experts against the same members on whole faces.
    for source, recs in regions.items():
        ref = {r["model"]: r for r in recs if r["kind"] == "strategy" and r["group"] == "faces"}
        for strategy in ("HardVote", "SoftVote"):
            base = next((n for n, r in ref.items() if r["strategy"] == strategy), None)
            for group in ("regions", "experts", "faces + experts"):
                row = next((r["model"] for r in recs if r["kind"] == "strategy" and r["group"] == group
                            and r["strategy"] == strategy), None)
                if base and row:
                    a, b = by_seed(recs, row), by_seed(recs, base)
                    said.append(f"- {source}: {row} {pct(a.values())} % against {base} on whole faces "
                                f"{pct(b.values())} %: {signed([a[s] - b[s] for s in a if s in b])} points.")
        # The experts against one network of their own recipe on the whole face (in both runs).
        own = next((r["model"] for r in recs if r["kind"] == "member" and r["member"] == EXPERT_RECIPE and r["flip"]), None)
        for strategy in ("HardVote", "SoftVote"):
            row = next((r["model"] for r in recs if r["kind"] == "strategy" and r["group"] == "experts"
                        and r["strategy"] == strategy), None)
            if own and row:
                a, b = by_seed(recs, row), by_seed(recs, own)
                said.append(f"- {source}: {row} {pct(a.values())} % against one {EXPERT_RECIPE} on the whole face "
                            f"({own}) {pct(b.values())} %: {signed([a[s] - b[s] for s in a if s in b])} points.")
    return said, goals, line


def write_results(path: Path, out: Path, argv: list[str], wall: dict[str, float], data: dict | None = None) -> Path:
    """``benchmarks/results/fer2013.md`` from the finished runs in ``out``."""
    from lightning_fer.cv.report import read_records, slug

    notes = ""
    if path.is_file() and NOTES in (text := path.read_text()):
        notes = text[text.index(NOTES):]
    faces = read_records(out / STEPS["faces"][1])
    regions = {label: read_records(out / STEPS[step][1]) for step, label in
               (("regions", "Dlib regions"), ("regions_mtcnn", "MTCNN regions"))
               if (out / STEPS[step][1] / "table2_runs.csv").is_file()}
    seeds = sorted({r["seed"] for r in faces if r["seed"] is not None})
    said, goals, line = reading(faces, regions)
    minutes = member_minutes(out / STEPS["faces"][1], seeds)
    cpu_min = sum(sum(v) for v in minutes.values())
    total = sum(wall.values()) / 60
    lines = ["# FER2013: single networks against ensembles (Table II)", "",
             f"Machine: {machine()}", "",
             f"Command: `{command_line([a for a in argv if a != '--report-only'])}`. Its steps are `python -m "
             "lightning_fer cv --config configs/fer2013/cv.yaml` (seed by seed), then `cv_regions.yaml` and "
             "`cv_regions_mtcnn.yaml` on seed 0.", "",
             "Wall time per step (`wall.json`, summed over the calls that worked on it): "
             + ("; ".join(f"{k} {v / 60:.1f} min" for k, v in wall.items()) + f"; in all {total:.1f} min."
                if wall else "not recorded by this driver (the steps were run as `cv` calls)."),
             f"Training time of the members, summed over seeds and members: {cpu_min:.0f} min on 2 cores.", "",
             line, "",
             "## Data", "",
             "FER2013 as an image folder, duplicates dropped (`duplicates: drop`). The Training split is cut into 5 "
             "stratified folds; members train on folds 1-4 (ResNet50 and Inception V3 on a stratified half of them), "
             "fold 0 is where stacking, calibration and ensemble selection learn; PublicTest (`val/`) is the test set "
             "of every row. The published figures below are on PrivateTest, which is not available here.", ""]
    if data:
        classes = list(next(iter(data["counts"].values())).keys())
        lines += ["| split | " + " | ".join(classes) + " | total |", "|---|" + "---|" * (len(classes) + 1),
                  *[f"| {s} | " + " | ".join(str(c[k]) for k in classes) + f" | {sum(c.values())} |"
                    for s, c in data["counts"].items()], "", f"Duplicates: {data['duplicates']}", ""]
    lines += [f"Every table: mean ± sample standard deviation over {len(seeds)} seed(s) {seeds}, in percent "
              "(ECE: 15 bins), NLL in nats.", "",
              "## Table II: whole faces", "",
              "Each member on the face and with flip TTA (`+ flip`: the mean of its probabilities on the face and its "
              "mirror); each strategy over all seven members (plain names), the four cheap ones (`[cheap]`: the quick "
              "VGG, its two bagged copies, the mini-Xception) and the paper's three (`[paper]`), on the face and its mirror.",
              "", *section(faces, lambda r: r["kind"] in ("member", "strategy"))]
    for label, recs in regions.items():
        lines += [f"## Table II: the paper's regions ({label})", "",
                  "`[faces]`: the whole-face members on the face and its mirror; `[regions]`: the same members on the "
                  "five regions (the paper's Eq. 8); `[experts]`: one quick member trained on each region (24 px parts, "
                  "32 px rest of the face), bound to it; `[faces + experts]`: both; plain names: the members on all six "
                  "views and the mirror.", "",
                  *section(recs, lambda r: r["kind"] == "expert" or (r["kind"] == "member" and r["flip"]) or
                           (r["kind"] == "strategy" and (r["group"] in REGION_GROUPS or r["group"] == "all views")))]
    best = max({r["model"] for r in faces if r["kind"] == "member"}, key=lambda n: float(np.mean(list(by_seed(faces, n).values()))))
    plain = [n for n in dict.fromkeys(r["model"] for r in faces if r["kind"] == "strategy" and r["group"] == "all views")]
    lines += ["## Selective prediction", "",
              "Accuracy on the 90% and 80% of faces a row is surest of (the rest flagged for a person), ranked by its top "
              "probability and, for an ensemble, by its voters' agreement with its answer.", "",
              *selective_section(faces, [best, *plain])]
    lines += ["## Training time per member (min, each seed)", "", "| member | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds), *[f"| {m} | " + " | ".join(f"{v:.1f}" for v in vs) + " |" for m, vs in minutes.items()],
              "", "## Reading (computed from the structured rows)", "", *said, "",
              "| goal (issue 25) | figure | |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in goals], "",
              "## Published figures, for orientation (FER2013 PrivateTest, not the split used here)", "",
              "| model | accuracy | split |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in PUBLISHED], ""]
    pics = path.parent / f"{path.stem}_figures"
    if pics.exists():
        shutil.rmtree(pics)
    pics.mkdir(parents=True)
    wanted = [(out / "cv" / "table2_acc.png", "faces_table2_acc.png")]
    g_rows = [best, *plain[:2]]
    wanted += [(out / "cv" / f"confusion_{slug(n)}.png", f"faces_confusion_{slug(n)}.png") for n in g_rows]
    for step in ("regions", "regions_mtcnn"):
        wanted.append((out / STEPS[step][1] / "table2_acc.png", f"{step}_table2_acc.png"))
    copied = []
    for src, name in wanted:
        if src.is_file():
            shutil.copyfile(src, pics / name)
            copied.append(pics / name)
    lines += ["## Pictures", "", *[f"![{p.stem}]({pics.name}/{p.name})" for p in copied], ""]
    from lightning_fer.files import write_text

    write_text(path, "\n".join(lines) + ("\n" + notes if notes else ""))
    return path


def data_summary(overrides: list[str]) -> dict:
    """Counts of the splits as the members saw them (fold 0 held out), and the duplicate report."""
    from lightning_fer.build import build

    dm = build(REPO / "configs/fer2013/quick_member.yaml", overrides, {"data": {"init_args": {"folds": {"fold": 0, "num_folds": 5}}}}).datamodule
    dm.prepare_data()
    dm.setup("fit")
    return {"counts": {name: {c: int((ds.labels == k).sum()) for k, c in enumerate(dm.class_names)}
                       for name, ds in dm.datasets.items()},
            "duplicates": str(dm.duplicate_report) if dm.duplicate_report else "kept as they are"}


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None, help="the FER2013 folder (train/, val/); default the configs' own")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--no-regions", action="store_true", help="skip the region steps (Dlib and MTCNN)")
    ap.add_argument("--no-mtcnn", action="store_true", help="skip the MTCNN region step")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default runs/fer2013-<profile>)")
    ap.add_argument("--results", type=Path, default=None, help="results file (default benchmarks/results/fer2013.md)")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every member")
    ap.add_argument("--report-only", action="store_true", help="rewrite the results file from a finished run folder")
    args = ap.parse_args(argv)
    if not ((args.root or DEFAULT_ROOT) / "train").is_dir():
        raise SystemExit(f"FER2013 not found at {args.root or DEFAULT_ROOT} (expected train/ and val/ in it); pass --root")
    args.out = (args.out or REPO / "runs" / f"fer2013-{args.profile}").resolve()
    suffix = "" if args.profile == "cpu" else f"_{args.profile}"
    results = (args.results or HERE / "results" / f"fer2013{suffix}.md").resolve()
    todo = steps(args.seeds, not args.no_regions, not (args.no_regions or args.no_mtcnn))
    wall_path = args.out / "wall.json"
    if args.report_only:
        if not (args.out / "cv" / "table2_runs.csv").is_file():
            raise SystemExit(f"--report-only: {args.out} holds no finished faces step (cv/table2_runs.csv); "
                             "rerun without it")
        wall = json.loads(wall_path.read_text()) if wall_path.is_file() else {}
        print(f"wrote {write_results(results, args.out, argv, wall)}")
        return results
    from lightning_fer.cv import run_config

    root = [f"--data.init_args.root={args.root.resolve()}"] if args.root else []
    os.chdir(REPO)  # the cv configs name member configs relative to the repository
    wall: dict = {}
    for what, seeds in todo:
        config, folder = STEPS[what]
        from lightning_fer.cv import arguments

        given = arguments(["--config", config])
        budget = MEMBER_OVERRIDES[args.profile]
        own = given["lineup"].overrides
        lineup = replace(given["lineup"], overrides=[*([own] if isinstance(own, dict) else own), *root,
                                                     *PROFILES[args.profile], *args.extra],
                         **({} if budget is None else {"member_overrides": budget}))
        t0 = time.perf_counter()
        run_config(config, output_dir=str(args.out / folder), members_dir=str(args.out / "cv"),
                   folds=replace(given["folds"], seeds=seeds), lineup=lineup)
        wall = add_wall(wall_path, step_name(what, seeds), time.perf_counter() - t0)
        write_results(results, args.out, argv, wall, data_summary(root))
    print(f"\nwrote {results}")
    return results


if __name__ == "__main__":
    main()
