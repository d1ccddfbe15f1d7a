"""FER2013 Table II: single networks against their ensembles, on real faces, in one command.

    python benchmarks/fer2013.py                    # 2 CPU cores: 2.3-4.5 hours (bf16 units or not), resumable
    python benchmarks/fer2013.py --seeds 0          # one seed (the first half)
    python benchmarks/fer2013.py --profile h100     # one H100: the paper's three at 112 px
    python benchmarks/fer2013.py --report-only      # rewrite the results file from a finished run

Runs the public ``cv`` with ``configs/fer2013/cv.yaml`` (four whole-face members, ResNet18
region experts, flip test-time augmentation, ResNet18's snapshots; every strategy over each
group) and ``configs/fer2013/cv_distill.yaml`` (a ResNet18 student of the soft vote of ResNet18's
snapshots), seed by seed (every seed's Table II, then every seed's student), and writes
``benchmarks/results/fer2013.md`` after each step: the data as used, the tables, the cheap
ensembles, each member's inference cost, the reading computed from the per-seed figures (and the
issue's goals, met or not), wall times, the command, and confusion matrices beside it.

Interrupted, it resumes where it stopped (finished members, a half-trained member's last epoch,
collected predictions). Text under ``## Notes by hand`` in the results file is kept.
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
PAPER = ["inception_v3", "resnet50", "sppnet"]
#: Extra overrides per profile, on top of the configs and of cv.yaml (which are the CPU profile:
#: its member_overrides train Inception V3 and ResNet50 2 epochs on half the folds).
PROFILES: dict[str, list[str]] = {
    "cpu": [],
    # One H100: every member at 112 px with mixed precision (the fast path chooses it), 12
    # epochs on all training folds, big batches, many loader workers. Not run: no GPU was lent.
    "h100": [
        "--trainer.max_epochs=12",
        "--data.init_args.image_size=112",
        "--data.init_args.batch_size=256",
        "--data.init_args.num_workers=12",
        "--model.init_args.optim.cycles=3",
    ],
}
#: cv.yaml's per-member budget, replaced per profile (``None``: cv.yaml's own).
MEMBER_OVERRIDES: dict[str, dict | None] = {"cpu": None, "h100": {}}
PUBLISHED = [
    ("Best single CNNs without extra data", "about 73%", "PrivateTest"),
    ("Ensemble, Pramerdorfer & Kampel (2016)", "75.2%", "PrivateTest"),
    ("Residual Masking Network with six other models", "76.8%", "PrivateTest"),
    ("Human accuracy (estimate)", "65 ± 5%", "-"),
]
GROUP_TITLES = [
    ("faces", "Whole faces", "Each member on the face (and `+ flip`: the mean of its probabilities on the face and "
     "its mirror); each strategy over the four whole-face members on the face and its mirror."),
    ("regions", "The paper's region vote with whole-face members",
     "The whole-face members applied to the five landmark regions (left eye, right eye, nose, mouth, rest of the face): "
     "4 x 5 votes. Plain rows: the same members on all six views and the mirror."),
    ("experts", "Region experts (the paper's design)",
     "A ResNet18 trained on each region at its own size, bound to it (`[experts]`: 5 votes); `[faces + experts]`: the "
     "four whole-face members on the face and its mirror with the five experts."),
]


def _data_summary(overrides: list[str]) -> dict:
    """Counts of the splits as the ResNet18 member saw them, and the duplicate report."""
    from lightning_fer.build import build

    dm = build(REPO / "configs/fer2013/resnet18.yaml", overrides).datamodule
    dm.prepare_data()
    dm.setup("fit")
    return {
        "counts": {name: {c: int((ds.labels == k).sum()) for k, c in enumerate(dm.class_names)}
                   for name, ds in dm.datasets.items()},
        "duplicates": str(dm.duplicate_report) if dm.duplicate_report else "kept as they are",
        "index": str(dm.index_report),
    }


def per_seed(rows: dict[str, list[dict]], name: str, key: str = "acc") -> list[float]:
    return [100 * r[key] for r in rows.get(name, [])]


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def group_of(name: str) -> str:
    return name[name.index("[") + 1 : -1] if name.endswith("]") and " [" in name else ""


def select(rows: dict[str, list[dict]], group: str, members: list[str], experts: bool = False) -> list[str]:
    """Row names of one section: its members' rows and its strategies' rows."""
    def is_member(n):
        return "[" not in n and not any(s in n for s in ("HardVote", "SoftVote", "Stacking"))

    out = []
    for n in rows:
        if group == "faces" and is_member(n) and n.split(" + ")[0] in members:
            out.append(n)
        elif group == "experts" and is_member(n) and "@" in n and "#" not in n:
            out.append(n)
        elif group_of(n) == group or (group == "regions" and not is_member(n) and group_of(n) == ""):
            out.append(n)
        elif group == "experts" and group_of(n) == "faces + experts":
            out.append(n)
    return out


def table(rows: dict[str, list[dict]], names: list[str]) -> list[str]:
    """Markdown rows: mean ± std over seeds (accuracy ... ECE in %, NLL in nats), and per-seed accuracy."""
    import numpy as np

    from lightning_fer.cv.report import COLUMNS

    head = "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " | accuracy per seed |"
    out = [head, "|---" * (len(COLUMNS) + 2) + "|"]
    for n in names:
        cells = []
        for key, _, pct in COLUMNS:
            v = np.array([r.get(key, np.nan) for r in rows[n]], dtype=float) * (100 if pct else 1)
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            cells.append("-" if np.isnan(v).all() else f"{v.mean():.1f} ± {sd:.1f}" if pct else f"{v.mean():.3f} ± {sd:.3f}")
        out.append(f"| {n} | " + " | ".join(cells) + f" | {fmt(per_seed(rows, n))} |")
    return out


def reading(rows: dict[str, list[dict]], distill: dict[str, list[dict]] | None, members: list[str],
            train_minutes: dict[str, list[float]]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Sentences and goal checks computed from the per-seed figures."""
    out: list[str] = []
    goals: list[tuple[str, str, str]] = []
    seeds = len(rows[members[0]])
    best = max(members, key=lambda m: mean(per_seed(rows, m)))
    spread = {m: max(per_seed(rows, m)) - min(per_seed(rows, m)) for m in members} if seeds > 1 else {}
    out.append(f"- Best member: **{best}**, accuracy {fmt(per_seed(rows, best))} % (seed by seed), trained in "
               f"{fmt(train_minutes.get(best, []))} min.")
    ok = min(per_seed(rows, best)) >= 62 and max(train_minutes.get(best, [99])) <= 30
    goals.append(("Best member >= 62% in <= 30 min", f"{best}: {fmt(per_seed(rows, best))} %, "
                  f"{fmt(train_minutes.get(best, []))} min", "met" if ok else "not met"))
    # Ensembles of >= 3 members with the paper's three among them: the groups over the face members.
    ens = [n for n in rows if group_of(n) in ("", "faces", "regions", "faces + experts") and "[" in n or
           (n.split(" ")[0] in ("HardVote", "SoftVote", "Stacking") and group_of(n) == "")]
    best_ens = max(ens, key=lambda n: mean(per_seed(rows, n)))
    plain = [e - m for e, m in zip(per_seed(rows, best_ens), per_seed(rows, best))]
    # The ensembles count the mirror as a view: the fair reference is the best member on the same views.
    ref = f"{best} + flip" if f"{best} + flip" in rows else best
    gaps = [e - m for e, m in zip(per_seed(rows, best_ens), per_seed(rows, ref))]
    out.append(f"- Best ensemble with the paper's three among its members: **{best_ens}**, accuracy "
               f"{fmt(per_seed(rows, best_ens))} %; minus the best member, seed by seed: "
               f"{', '.join(f'{g:+.1f}' for g in plain)} points on the face alone"
               + (f", {', '.join(f'{g:+.1f}' for g in gaps)} points against {ref} (the same views)." if ref != best
                  else "."))
    if spread:
        out.append("- Spread between seeds (max - min accuracy) of each member: "
                   + ", ".join(f"{m} {s:.1f}" for m, s in spread.items()) + " points.")
    largest = max(spread.values()) if spread else 0.0
    if max(gaps) <= 0:
        out.append("- The best ensemble does not beat the best member in any seed.")
    elif spread and min(gaps) > largest:
        out.append(f"- The gain is larger than every member's seed spread ({largest:.1f} points) in every seed.")
    elif spread:
        out.append(f"- The gain is not beyond the seed spread ({largest:.1f} points): not a clear win.")
    goals.append(("Best ensemble (>= 3 members, the paper's three among them) >= +1.5 points over the best member, "
                  "each seed", f"{best_ens}: {', '.join(f'{g:+.2f}' for g in gaps)} against {ref}",
                  "met" if seeds > 1 and min(gaps) >= 1.5 else ("not met" if min(gaps) < 1.5 else "one seed only")))
    snaps = [n for n in rows if n.startswith("SoftVote [snapshots ")]
    for n in snaps:
        owner = n[len("SoftVote [snapshots "):-1]
        ends = [m for m in rows if m.startswith(f"{owner}#e") and " + " not in m]
        singles = [m for m in rows if m == owner or m.startswith((f"{owner}#e", f"{owner} + "))]
        best_single = [max(vals) for vals in zip(*[per_seed(rows, m) for m in singles])]
        g = [e - b for e, b in zip(per_seed(rows, n), best_single)]
        out.append(f"- Snapshot ensemble of {owner} ({len(ends)} cycle ends, soft vote on the face and its mirror): "
                   f"{fmt(per_seed(rows, n))} % against its best single checkpoint's {fmt(best_single)} % (the best of "
                   f"the best-by-validation checkpoint and the cycle ends, with or without the mirror): "
                   f"{', '.join(f'{x:+.1f}' for x in g)} points.")
        if "@" not in owner:
            goals.append((f"Snapshot ensemble >= +1 point over the best single checkpoint of its run ({owner})",
                          ", ".join(f"{x:+.2f}" for x in g), "met" if min(g) >= 1 else "not met"))
    if distill:
        for s in [n for n in distill if n.endswith(".student")]:
            # The networks of the teacher's run, each alone: the member and its snapshots.
            singles = [n for n in distill if "[" not in n and "+" not in n and not n.endswith(".student")
                       and n not in ("HardVote", "SoftVote", "Stacking") and "." not in n.split("#")[0]]
            top = [max(v) for v in zip(*[per_seed(distill, m) for m in singles])]
            g = [a - b for a, b in zip(per_seed(distill, s), top)]
            teacher = next((n for n in distill if n.startswith("SoftVote [snapshots") and ".student" not in n), "SoftVote")
            out.append(f"- Distilled student {s}: {fmt(per_seed(distill, s))} % against the best single network of the "
                       f"run it learned from ({', '.join(singles)}: {fmt(top)} %): {', '.join(f'{x:+.1f}' for x in g)} "
                       f"points; the teacher ensemble ({teacher}): {fmt(per_seed(distill, teacher))} %.")
            goals.append(("Distilled student >= +1 point over the best member it learned from",
                          ", ".join(f"{x:+.2f}" for x in g), "met" if min(g) >= 1 else "not met"))
    for row, label in (("HardVote [experts]", "with ResNet18 region experts"),
                       ("HardVote [regions]", "with the whole-face members on the regions")):
        ref = "resnet18" if "experts" in row else "HardVote [faces]"
        if row in rows and ref in rows:
            out.append(f"- The paper's region vote (Eq. 8) {label}: {fmt(per_seed(rows, row))} % against "
                       f"{ref} on whole faces: {fmt(per_seed(rows, ref))} %.")
    return out, goals


def inference_cost(run_dir: Path, names: list[str], image_size: int = 48, batch: int = 128) -> dict[str, float]:
    """Milliseconds per face of each member's network on this machine (float32, one batch of
    ``batch`` faces at the member's size, after a warm-up)."""
    import torch

    from lightning_fer.ensemble.members import load_member

    out = {}
    for n in names:
        done = run_dir / n / "done.json"
        if not done.is_file():
            continue
        m = load_member(json.loads(done.read_text())["checkpoint"]).eval()
        x = torch.randn(batch, 3, m.image_size, m.image_size)
        with torch.no_grad():
            m(x)
            t = time.perf_counter()
            for _ in range(3):
                m(x)
        out[n] = 1000 * (time.perf_counter() - t) / (3 * batch)
    return out


def command_line(argv: list[str]) -> str:
    """The call as a reader would type it: this machine's absolute paths become ``<option>``."""
    words = [f"<{prev.lstrip('-')}>" if os.path.isabs(w) and prev.startswith("--") else w
             for prev, w in zip(["", *argv], argv)]
    return " ".join(["python", "benchmarks/fer2013.py", *words])


def write_results(path: Path, args, data: dict, rows: dict, distill: dict | None, seconds: dict[str, float],
                  members: list[str], pictures: list[Path], train_minutes: dict[str, list[float]],
                  cost: dict[str, float]) -> None:
    notes = ""
    if path.is_file():
        text = path.read_text()
        if NOTES in text:
            notes = text[text.index(NOTES):]
    classes = list(next(iter(data["counts"].values())).keys())
    seeds = len(rows[members[0]])
    said, goals = reading(rows, distill, members, train_minutes)
    total = sum(seconds.values()) / 60
    goals.append(("Whole experiment (every seed's cv and student) <= 120 min, resumable",
                  f"{total:.0f} min for {seeds} seed(s)", "met" if seeds > 1 and total <= 120 else "not met"))
    lines = [
        "# FER2013: single networks against ensembles (Table II)", "",
        f"Machine: {machine()}", "",
        f"Command: `{command_line([a for a in sys.argv[1:] if a != '--report-only'])}` (profile `{args.profile}`"
        + ("; this file then rewritten from the finished run folder by the same call with `--report-only`, which adds "
           "no wall time" if getattr(args, "report_only", False) else "") + "). "
        "Wall time per step, summed over every call that worked on it (`wall.json` in the run folder): "
        + "; ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()) + f"; in all {total:.1f} min.", "",
        "Training time per member and seed (min, from each `done.json`; a resumed member's attempts added up): " + "; ".join(f"{m} {fmt(v)}" for m, v in train_minutes.items()) + ".", "",
        "## Data", "",
        "FER2013 as an image folder: the Training split is cut into 5 stratified folds (no identities exist, so "
        "not subject-disjoint); members train on folds 1-4 (Inception V3 and ResNet50 on a stratified half of them) "
        "and fold 0 validates (best epoch) and is what stacking and calibration learn from; PublicTest (`val/`) is "
        "the test set. The official PrivateTest split is not available here: the published figures below are on "
        "another split.", "",
        f"- Landmarks: {data['index']}",
        f"- Duplicates (by file content, `duplicates: drop`): {data['duplicates']}.", "",
        "| split | " + " | ".join(classes) + " | total |",
        "|---|" + "---|" * (len(classes) + 1),
        *[f"| {s} | " + " | ".join(str(c[k]) for k in classes) + f" | {sum(c.values())} |" for s, c in data["counts"].items()],
        "",
        f"Every table: mean ± sample standard deviation over {seeds} seed(s) (one run each), accuracy to ECE in "
        "percent (ECE: 15 equal-width confidence bins), NLL in nats (probabilities floored at 1e-4, so a hard vote's "
        "confident miss costs 9.2).", "",
    ]
    for group, title, text in GROUP_TITLES:
        names = select(rows, group, members)
        if names:
            lines += [f"## Table II: {title.lower() if group != 'faces' else title}", "", text, "", *table(rows, names), ""]
    snaps = [n for n in rows if "#e" in n or "[snapshots" in n]
    if snaps:
        lines += ["## Cheap ensembles: snapshots", "",
                  "ResNet18's 6 epochs are 3 cosine cycles of 2 (`cosine_restarts`); the checkpoint at the end of each "
                  "cycle (`#e1`, `#e3`, `#e5`) is a member; the best-by-validation checkpoint is the `resnet18` row.",
                  "", *table(rows, [n for n in snaps if "@" not in n]), ""]
    if distill:
        names = [n for n in distill if "[" not in n or "snapshots" in n]
        lines += ["## Cheap ensembles: distillation", "",
                  "A ResNet18 with the ResNet18 member's recipe (so one member's cost, in training and inference), "
                  "trained on 0.5 x labels + 0.5 x the soft vote of the ResNet18 member's three snapshots (their mean "
                  "probabilities on each training face and its mirror, no augmentation; "
                  "`configs/fer2013/cv_distill.yaml`). Its own snapshots are rows too.", "",
                  *table(distill, [n for n in names if n in distill]), ""]
    if cost:
        ens = sum(v for k, v in cost.items() if k in members)
        lines += ["## Inference cost (ms per face, float32, this machine, batch 128)", "",
                  "| network | ms / face | x one ResNet18 |", "|---|---|---|",
                  *[f"| {k} | {v:.2f} | {v / cost.get('resnet18', v):.1f} |" for k, v in cost.items()],
                  f"| the four whole-face members (an ensemble on the face) | {ens:.2f} | {ens / cost.get('resnet18', ens):.1f} |",
                  f"| the same with the mirror (flip TTA) | {2 * ens:.2f} | {2 * ens / cost.get('resnet18', ens):.1f} |", ""]
    lines += ["## Reading (computed from the per-seed figures)", "", *said, "",
              "| goal (issue 14) | figure | |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in goals], "",
              "## Published figures, for orientation (FER2013 PrivateTest, not the split used here)", "",
              "| model | accuracy | split |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in PUBLISHED], "",
              "## Confusion matrices (test split, summed over seeds)", "",
              *[f"![{p.stem}]({p.parent.name}/{p.name})" for p in pictures], ""]
    text = "\n".join(lines) + ("\n" + notes if notes else "")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None,
                    help="the FER2013 folder (train/, val/); default the configs' own, ../shared/data/fer2013")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="run seed by seed, writing results after each")
    ap.add_argument("--no-distill", action="store_true", help="skip the distilled student")
    ap.add_argument("--distill-seeds", type=int, nargs="+", default=None,
                    help="seeds that get a student (default all of --seeds)")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default runs/fer2013-<profile>)")
    ap.add_argument("--results", type=Path, default=None,
                    help="results file (default benchmarks/results/fer2013.md, fer2013_<profile>.md for others)")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every member, e.g. --trainer.max_epochs=1")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the results file from a finished run folder (cached predictions; its wall times "
                         "are not added to wall.json); refused while a step is unfinished")
    args = ap.parse_args(argv)
    if not ((args.root or DEFAULT_ROOT) / "train").is_dir():
        raise SystemExit(f"FER2013 not found at {args.root or DEFAULT_ROOT} (expected train/ and val/ in it); pass --root")
    args.out = (args.out or REPO / "runs" / f"fer2013-{args.profile}").resolve()
    suffix = "" if args.profile == "cpu" else f"_{args.profile}"
    results = (args.results or HERE / "results" / f"fer2013{suffix}.md").resolve()
    students = [] if args.no_distill else (args.seeds if args.distill_seeds is None else args.distill_seeds)
    todo = steps(args.seeds, students)
    if args.report_only:
        if missing := unfinished(args.out / "wall.json", todo):
            raise SystemExit(f"--report-only: {args.out} has not finished {', '.join(missing)}; "
                             "rerun without it to resume")
        todo = [s for i, s in enumerate(todo) if i + 1 == len(todo) or todo[i + 1][0] != s[0]]  # the last of each kind
    from lightning_fer.cv import run_config

    # The configs' relative root names the same data, cache and fingerprints from any checkout.
    root = [f"--data.init_args.root={args.root.resolve()}"] if args.root else []
    overrides = [*root, "--trainer.enable_progress_bar=false", *PROFILES[args.profile], *args.extra]
    os.chdir(REPO)  # the cv configs name member configs relative to the repository
    face = distill = None
    for what, seeds in todo:
        t0 = time.perf_counter()
        if what == "cv":
            budget = MEMBER_OVERRIDES[args.profile]
            face = run_config("configs/fer2013/cv.yaml", output_dir=str(args.out / "cv"), seeds=seeds, overrides=overrides,
                              **({} if budget is None else {"member_overrides": budget}))
            cv_seeds = seeds  # the seeds of the tables (a student step may cover fewer)
        else:
            distill = run_config("configs/fer2013/cv_distill.yaml", output_dir=str(args.out / "cv_distill"),
                                 members_dir=str(args.out / "cv"), seeds=seeds, overrides=overrides)
        spent = 0.0 if args.report_only else time.perf_counter() - t0
        seconds = add_wall(args.out / "wall.json", step_name(what, seeds), spent)
        write(args, results, face, distill, seconds, overrides, cv_seeds)
    print(f"\nwrote {results}")
    return results


def steps(seeds: list[int], students: list[int] | None = None) -> list[tuple[str, list[int]]]:
    """The calls, seed by seed: every seed's Table II first (the question the experiment asks), then
    the students of ``students`` (default every seed); each call covers the seeds so far, so the
    results file grows one seed at a time.

    Example:
        >>> steps([0, 1])
        [('cv', [0]), ('cv', [0, 1]), ('distillation', [0]), ('distillation', [0, 1])]
    """
    students = seeds if students is None else students
    return [("cv", seeds[: i + 1]) for i in range(len(seeds))] + [
        ("distillation", students[: i + 1]) for i in range(len(students))]


def unfinished(path: Path, todo: list[tuple[str, list[int]]]) -> list[str]:
    """The steps of ``todo`` with no wall time in ``path`` (``wall.json``: a step is recorded when it ends)."""
    wall = json.loads(path.read_text()) if path.is_file() else {}
    return [step_name(*step) for step in todo if step_name(*step) not in wall]


def step_name(what: str, seeds: list[int]) -> str:
    """A step's key in ``wall.json``: ``cv seed 1`` is the call that ran seeds up to 1."""
    return f"{what} seed {seeds[-1]}"


def add_wall(path: Path, step: str, seconds: float) -> dict[str, float]:
    """Add ``seconds`` to ``step`` in the run folder's ``wall.json`` (every call's wall time per
    step, so a resumed experiment still reports what it cost in all); return the whole record."""
    wall = json.loads(path.read_text()) if path.is_file() else {}
    wall[step] = wall.get(step, 0.0) + seconds
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(wall, indent=1))
    os.replace(tmp, path)
    return wall


def write(args, results: Path, face: dict, distill: dict | None, seconds: dict, overrides: list[str], seeds: list[int]):
    from lightning_fer.cv.report import slug

    rows = face["rows"]
    members = [m for m in (*PAPER, "resnet18") if m in rows]
    students = [n for n in (distill or {}).get("rows", {}) if n.endswith(".student")]
    trained = [n for n in rows if "[" not in n and "+" not in n and "#" not in n] + students
    train_minutes = {n: [json.loads(p.read_text())["seconds"] / 60 for s in seeds
                         if (p := args.out / "cv" / f"fold0-seed{s}" / n / "done.json").is_file()] for n in trained}
    train_minutes = {n: v for n, v in train_minutes.items() if v}  # strategies train nothing
    cost = inference_cost(args.out / "cv" / f"fold0-seed{seeds[0]}", [*members, "resnet18@mouth"])
    data = _data_summary(overrides)
    pics_dir = results.parent / f"{results.stem}_figures"  # not ".../fer2013/*.png": that reads as data images
    if pics_dir.exists():
        shutil.rmtree(pics_dir)
    pics_dir.mkdir(parents=True)
    best = max(members, key=lambda m: mean(per_seed(rows, m)))
    wanted = [best, "SoftVote [faces]", "Stacking [faces]", "HardVote [regions]", "HardVote [experts]",
              "Stacking [faces + experts]", "SoftVote [snapshots resnet18]"]
    pictures = []
    for name in wanted:
        src = args.out / "cv" / f"confusion_{slug(name)}.png"
        if src.is_file():
            pictures.append(pics_dir / src.name)
            shutil.copyfile(src, pictures[-1])
    write_results(results, args, data, rows, (distill or {}).get("rows"), seconds, members, pictures, train_minutes, cost)


if __name__ == "__main__":
    main()
