"""The benchmark suite's smallest cases run (no time is asserted), and the FER2013 report's
reading follows its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import FER2013, REPO

sys.path.insert(0, str(REPO))


@pytest.mark.slow  # every benchmark's quick case: run with -m slow
def test_quick_benchmarks_run_and_print_tables():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--fer2013", str(FER2013)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Machine:" in out
    sections = _sections(out)
    for name in ("backbones", "training", "ensemble", "options", "fastpath"):
        tables = _tables(sections[f"{name} (quick)"])
        assert tables, f"{name}: no table"
        rows = [r for _, body in tables for r in body]
        # A baseline measured in the same run: a column or a row named so, or the row the ratios are taken against.
        assert (any("baseline" in " ".join(head) for head, _ in tables)
                or any("baseline" in r[0] or any(c.startswith("1.00") for c in r[1:]) for r in rows)), f"{name}: no baseline"
        for head, body in tables:
            assert body and all(len(r) == len(head) for r in body), f"{name}: ragged table under {head}"
            numbers = [float(c.rstrip("x%")) for r in body for c in r[1:] if _is_number(c.rstrip("x%"))]
            assert numbers and all(v == v and v >= 0 for v in numbers), f"{name}: {head} holds no figures"
    if (FER2013 / "train").is_dir():
        assert _tables(sections["data (quick)"])
    else:
        assert "## data: skipped" in out


def _sections(out: str) -> dict[str, str]:
    parts = out.split("\n## ")
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Markdown tables as (header cells, rows of cells)."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and lines[i + 1].startswith("|---"):
            body = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                body.append([c.strip() for c in row.strip("|").split("|")])
            tables.append(([c.strip() for c in line.strip("|").split("|")], body))
    return tables


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_gpu_script_runs_its_smoke_case_on_cpu(fer2013_root):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--smoke", "--root", str(fer2013_root)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| ResNet50 training, synthetic tensors on the device (ceiling) |" in proc.stdout
    assert "FER2013 PublicTest through the loader" in proc.stdout and "uint8 views on the wire" in proc.stdout
    assert "| ResNet50 training, 32-true, contiguous (baseline) |" in proc.stdout  # the fast-path comparison


def _records(accs: dict[str, tuple[str, dict, list[float]]]) -> list[dict]:
    """Structured rows as ``cv`` writes them: name -> (kind, fields, accuracy per seed in %)."""
    from lightning_fer.cv.report import METRICS, ROW_FIELDS

    out = []
    for name, (kind, fields, per_seed) in accs.items():
        for seed, a in enumerate(per_seed):
            base = {f: "" for f in ROW_FIELDS} | {"flip": False} | fields | {"kind": kind}
            out.append({"model": name, **base, "fold": 0, "seed": seed, **dict.fromkeys(METRICS, 0.5), "acc": a / 100})
    return out


PAPER3 = "sppnet_small;resnet50_small;inception_v3_small"


def _faces(ensemble=(66.0, 67.0)):
    m = {"quick_member": (64.0, 63.0), "sppnet_small": (57.0, 58.0), "resnet50_small": (40.0, 41.0)}
    rows = {}
    for name, (a, b) in m.items():
        rows[name] = ("member", {"member": name, "region": "face", "voters": name}, [a - 0.5, b - 0.5])
        rows[f"{name} + flip"] = ("member", {"member": name, "region": "face", "flip": True, "voters": name}, [a, b])
    rows["SoftVote"] = ("strategy", {"strategy": "SoftVote", "group": "all views", "flip": True,
                                     "voters": "quick_member;" + PAPER3}, list(ensemble))
    rows["EnsembleSelection"] = ("strategy", {"strategy": "EnsembleSelection", "group": "all views", "flip": True,
                                              "voters": "quick_member;" + PAPER3}, [65.0, 66.0])
    rows["Stacking"] = ("strategy", {"strategy": "Stacking", "group": "all views", "flip": True,
                                     "voters": "quick_member;" + PAPER3}, [65.5, 65.0])
    # A user's strategy named like a member, better than everything, that leaves out the paper's three:
    rows["quick_member (strategy)"] = ("strategy", {"strategy": "quick_member", "group": "cheap", "flip": True,
                                                    "voters": "quick_member"}, [90.0, 90.0])
    return _records(rows)


@pytest.mark.parametrize(("ensemble", "goal", "gains"), [
    ((66.0, 67.0), "met", "+2.00, +4.00"),
    ((65.0, 64.5), "missed", "+1.00, +3.00"),  # ensemble selection is then the best ensemble
])
def test_fer2013_reading_is_computed_from_the_columns(ensemble, goal, gains):
    from benchmarks.fer2013 import reading

    said, goals, line = reading(_faces(ensemble), {})
    # The best member is a member row with flip (the same views as the ensembles), never the
    # user's strategy named like a member; the ensemble includes the paper's three.
    assert line == f"ensemble minus best member, seed by seed: {gains}"
    text = "\n".join(said)
    assert "Best single member on the same views: **quick_member + flip**, 64.0, 63.0 %" in text
    verdicts = {g[0].split(",")[0].split(" >=")[0]: (g[1], g[2]) for g in goals}
    assert verdicts["Best ensemble with the paper's three"][1] == goal
    assert "Ensemble selection minus stacking over all views: -0.50, +1.00 points" in text
    assert verdicts["Ensemble selection at least as good as stacking (all members)"][1] == "missed, difference said"


def test_fer2013_regions_are_compared_with_the_same_members_on_faces():
    from benchmarks.fer2013 import reading

    regions = _records({
        "SoftVote [faces]": ("strategy", {"strategy": "SoftVote", "group": "faces", "voters": PAPER3}, [60.0, 61.0]),
        "SoftVote [regions]": ("strategy", {"strategy": "SoftVote", "group": "regions", "voters": PAPER3}, [50.0, 52.0]),
        "SoftVote [experts]": ("strategy", {"strategy": "SoftVote", "group": "experts", "voters": "q@mouth"}, [55.0, 55.0]),
    })
    said, _, _ = reading(_faces(), {"Dlib regions": regions})
    text = "\n".join(said)
    assert "Dlib regions: SoftVote [regions] 50.0, 52.0 % against SoftVote [faces] on whole faces 60.0, 61.0 %: " \
           "-10.00, -9.00 points" in text
    assert "Dlib regions: SoftVote [experts] 55.0, 55.0 %" in text


def test_fer2013_results_file_from_the_structured_rows(tmp_path):
    """The results file from finished runs' CSVs alone: the tables, the one gains line, the goals."""
    from benchmarks.fer2013 import write_results
    from lightning_fer.cv.report import METRICS, ROW_FIELDS
    from lightning_fer.files import write_csv

    out = tmp_path / "run"
    recs = _faces()
    write_csv(out / "cv" / "table2_runs.csv", ["model", *ROW_FIELDS, "fold", "seed", *METRICS],
              ([r["model"], *[r[f] for f in ROW_FIELDS], r["fold"], r["seed"], *[100 * r[m] for m in METRICS]]
               for r in recs))
    for seed in (0, 1):
        d = out / "cv" / f"fold0-seed{seed}" / "quick_member"
        d.mkdir(parents=True)
        (d / "done.json").write_text(json.dumps({"seconds": 600.0 + 60 * seed}))
    (tmp_path / "fer2013.md").write_text("old\n## Notes by hand\nkept\n")
    path = write_results(tmp_path / "fer2013.md", out, ["--out", str(out)], {"faces seed 1": 1500.0})
    text = path.read_text()
    assert text.count("ensemble minus best member, seed by seed: ") == 1
    assert "ensemble minus best member, seed by seed: +2.00, +4.00" in text
    assert "| quick_member | 10.0 | 11.0 |" in text  # training minutes per seed, from done.json
    assert "| quick_member (strategy) |" in text and "## Selective prediction" in text
    assert "python -m benchmarks.fer2013 --out <out>" in text and "faces seed 1 25.0 min" in text
    assert text.endswith("## Notes by hand\nkept\n")


def test_fer2013_command_line_hides_this_machines_paths():
    from benchmarks.fer2013 import command_line

    assert command_line(["--seeds", "0", "1", "--out", "/work/run", "--results", "/home/me/fer2013.md",
                         "--root", "data/fer2013"]) == \
        "python -m benchmarks.fer2013 --seeds 0 1 --out <out> --results <results> --root data/fer2013"


def test_fer2013_steps_and_wall_time_over_resumed_calls(tmp_path):
    from benchmarks.fer2013 import add_wall, steps, unfinished

    todo = steps([0, 1])
    assert todo == [("faces", [0]), ("faces", [0, 1]), ("regions", [0]), ("regions_mtcnn", [0])]
    assert steps([3], regions=False, mtcnn=False) == [("faces", [3])]
    path = tmp_path / "wall.json"
    add_wall(path, "faces seed 0", 60.0)  # a call that was killed after this step
    add_wall(path, "faces seed 0", 30.0)  # the call that resumed it
    assert json.loads(path.read_text()) == {"faces seed 0": 90.0}
    assert unfinished(path, todo) == ["faces seed 1", "regions seed 0", "regions_mtcnn seed 0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall.json"]  # no temporary file left


def test_fer2013_report_only_refuses_a_run_without_rows(tmp_path):
    from benchmarks.fer2013 import main

    (tmp_path / "data" / "train").mkdir(parents=True)
    with pytest.raises(SystemExit, match="holds no finished faces step"):
        main(["--root", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--results", str(tmp_path / "r.md"),
              "--report-only"])
    assert not (tmp_path / "r.md").exists()


@pytest.mark.slow  # a dozen fresh processes: run with -m slow
def test_scale_benchmark_smallest_case(tmp_path):
    out = tmp_path / "scale.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--sizes", "300", "600",
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "Machine:" in text
    (head, body), = _tables(text)
    assert head == ["figure", "0.3k", "0.6k", "290k", "1M"]
    figures = {r[0] for r in body}
    for name in ("warm start, six views (s), after", "worker private over an epoch (MiB), after",
                 "cold / decode-only rate, after", "main anonymous (KiB/record), after"):
        assert name in figures, sorted(figures)
    assert all(_is_number(c) for r in body for c in r[1:]), body
    data = json.loads((tmp_path / "work" / "scale.json").read_text())
    assert set(data["after"]) == {"300", "600"}


def test_fer2013_zoo_report_writes_the_four_lines_from_the_rows_and_probabilities(tmp_path):
    """The zoo's results file from a run's structured rows and per-face probabilities alone: the
    four lines a script reads, the paired comparison, per-class recall and its picture."""
    import torch

    from benchmarks.fer2013_zoo import report
    from lightning_fer.cv.report import METRICS, ROW_FIELDS
    from lightning_fer.files import save_torch, write_csv

    n, k = 200, 7
    labels = torch.arange(n) % k
    eye = torch.eye(k)
    member = eye[labels].clone()
    member[:60] = eye[(labels[:60] + 1) % k]  # 70% right
    ensemble = eye[labels].clone()
    ensemble[:40] = eye[(labels[:40] + 1) % k]  # 80% right, on a superset of the member's faces
    rows = {"vgg48 + flip": member, "SoftVote": ensemble, "vgg48": member}
    what = {"vgg48 + flip": {"kind": "member", "member": "vgg48", "region": "face", "flip": True, "voters": "vgg48"},
            "vgg48": {"kind": "member", "member": "vgg48", "region": "face", "flip": False, "voters": "vgg48"},
            "SoftVote": {"kind": "strategy", "strategy": "SoftVote", "group": "all views", "flip": True, "voters": "vgg48;r18"}}
    acc = {"vgg48 + flip": 0.7, "vgg48": 0.7, "SoftVote": 0.8}
    run = tmp_path / "run"
    write_csv(run / "table2_runs.csv", ["model", *ROW_FIELDS, "fold", "seed", *METRICS],
              ([m, *[what[m].get(f, "") for f in ROW_FIELDS], 0, "", *[100 * acc[m] if x == "acc" else 50.0 for x in METRICS]]
               for m in rows))
    save_torch({"labels": {"fold0": labels}, "class_names": [f"c{i}" for i in range(k)],
                "rows": {m: {"fold0": p} for m, p in rows.items()}, "what": what}, run / "test_probs.pt")
    (run / "fold0" / "vgg48").mkdir(parents=True)
    (run / "fold0" / "vgg48" / "done.json").write_text(json.dumps({"seconds": 1200.0}))
    out = tmp_path / "results" / "fer2013_zoo.md"
    out.parent.mkdir()
    out.write_text("old\n## Notes by hand\nkept\n")
    lines = report(run, out).splitlines()
    assert lines[0] == "best member: vgg48 + flip 70.0% PublicTest"
    assert lines[1].startswith("best ensemble: SoftVote 80.0% PublicTest (+10.0 over the best member, 95% CI ")
    assert lines[2] == "student: not trained yet PublicTest"
    assert lines[3] == "paper's three: sppnet not run, resnet50 not run, inception_v3 not run"
    text = out.read_text()
    assert "McNemar: 20 faces only the ensemble gets right, 0 only the member" in text
    assert "| vgg48 | 20.0 |" in text and text.endswith("## Notes by hand\nkept\n")
    assert (out.parent / "fer2013_zoo_figures" / "per_class_recall.png").is_file()


def test_fer2013_zoo_learning_curve_of_a_resumed_member_joins_its_runs(tmp_path):
    """A member resumed from its last checkpoint logs to a new ``version_N``: its curve is every
    run's epochs in order, not the last run's alone."""
    import os

    from benchmarks.fer2013_zoo import learning_curves

    logs = tmp_path / "fold0" / "resnet50" / "logs"
    for i, rows in enumerate([["0,,1", "0,0.33,", "1,0.39,", "2,,1.2"], ["2,0.45,", "3,0.52,"]]):
        f = logs / f"version_{i}" / "metrics.csv"
        f.parent.mkdir(parents=True)
        f.write_text("epoch,val/acc,train/loss\n" + "\n".join(rows) + "\n")
        os.utime(f, (1_000_000 + i, 1_000_000 + i))
    assert learning_curves(tmp_path) == {"resnet50": [(0, 0.33), (1, 0.39), (2, 0.45), (3, 0.52)]}


@pytest.mark.slow  # the whole predict on two short videos: run with -m slow
def test_video_benchmark_runs_the_whole_predict_and_prints_its_table():
    """benchmarks/video.py had fallen behind the predict options (0.2's predict_path) unnoticed."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.video", "--frames", "4"], capture_output=True, text=True,
                          timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [ln.rstrip(" |") for ln in proc.stdout.splitlines() if "whole predict" in ln]
    assert len(rows) == 2 and rows[0].endswith("| 4") and rows[1].endswith("| 12"), proc.stdout  # a row per face per frame
