"""The benchmark suite's smallest cases run (no time is asserted), and the FER2013 report's
reading follows its figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import FER2013, REPO

sys.path.insert(0, str(REPO))


@pytest.mark.slow  # every benchmark's quick case: run with -m slow
def test_quick_benchmarks_run_and_print_tables():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--fer2013", str(FER2013)],
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
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--root", str(fer2013_root)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| ResNet50 training, synthetic tensors on the device (ceiling) |" in proc.stdout
    assert "FER2013 PublicTest through the loader" in proc.stdout and "uint8 views on the wire" in proc.stdout
    assert "| ResNet50 training, 32-true, contiguous (baseline) |" in proc.stdout  # the fast-path comparison


def _rows(accs):
    return [{"acc": a / 100, "balanced_acc": 0, "precision": 0, "recall": 0, "f1": 0, "ece": 0, "nll": 0} for a in accs]


@pytest.mark.parametrize(("ensemble", "verdict", "goal"), [
    ([60.0, 61.0], "larger than every member's seed spread", "met"),
    ([50.5, 52.0], "not beyond the seed spread", "not met"),
    ([40.0, 41.0], "does not beat the best member in any seed", "not met"),
])
def test_fer2013_reading_follows_the_figures(ensemble, verdict, goal):
    from benchmarks.fer2013 import reading

    members = ["inception_v3", "resnet50", "sppnet", "resnet18"]
    rows = {"inception_v3": _rows([45.0, 47.0]), "resnet50": _rows([50.0, 51.0]), "sppnet": _rows([44.0, 44.5]),
            "resnet18": _rows([49.0, 49.5]), "SoftVote [faces]": _rows(ensemble), "HardVote [regions]": _rows([30.0, 31.0]),
            "HardVote [experts]": _rows([35.0, 36.0]), "resnet18#e1": _rows([40.0, 41.0]),
            "resnet18#e3": _rows([48.0, 50.0]), "SoftVote [snapshots resnet18]": _rows([50.0, 50.0])}
    distill = {"resnet18": rows["resnet18"], "resnet18#e3": rows["resnet18#e3"], "resnet18.student": _rows([52.0, 53.0]),
               "SoftVote [snapshots resnet18]": _rows([50.0, 50.0]), "resnet18.student#e3": _rows([51.0, 52.0])}
    said, goals = reading(rows, distill, members, {"resnet50": [10.0, 11.0]})
    text = "\n".join(said)
    assert "Best member: **resnet50**, accuracy 50.0, 51.0 % (seed by seed), trained in 10.0, 11.0 min" in text
    assert verdict in text
    assert f"SoftVote [faces]**, accuracy {ensemble[0]:.1f}, {ensemble[1]:.1f} %" in text
    assert "(Eq. 8) with ResNet18 region experts: 35.0, 36.0 % against resnet18 on whole faces: 49.0, 49.5 %" in text
    verdicts = {g[0].split(" (")[0].split(" >=")[0]: (g[1], g[2]) for g in goals}
    assert verdicts["Best member"] == ("resnet50: 50.0, 51.0 %, 10.0, 11.0 min", "not met")  # below 62%
    assert verdicts["Best ensemble"][1] == goal
    # Snapshots: the best single checkpoint per seed is max(resnet18, #e1, #e3) = 49.0, 50.0.
    assert verdicts["Snapshot ensemble"] == ("+1.00, +0.00", "not met")
    # The student against the best single network of the run it learned from: resnet18 or #e3 (49.0, 50.0).
    assert verdicts["Distilled student"] == ("+3.00, +3.00", "met")
    assert "the teacher ensemble (SoftVote [snapshots resnet18]): 50.0, 50.0 %" in text


def test_fer2013_ensemble_gain_is_judged_against_the_best_member_on_the_same_views():
    """Ensembles that count the mirror are compared with the best member + flip, not the member alone."""
    from benchmarks.fer2013 import reading

    members = ["inception_v3", "resnet50", "sppnet", "resnet18"]
    rows = {m: _rows([40.0, 41.0]) for m in members} | {"resnet50": _rows([50.0, 51.0]),
                                                        "resnet50 + flip": _rows([52.0, 52.5]),
                                                        "Stacking [faces]": _rows([53.0, 54.0])}
    said, goals = reading(rows, None, members, {"resnet50": [10.0, 11.0]})
    text = "\n".join(said)
    assert "+3.0, +3.0 points on the face alone, +1.0, +1.5 points against resnet50 + flip (the same views)" in text
    verdicts = {g[0].split(" (")[0]: (g[1], g[2]) for g in goals}  # two decimals: +0.98 is not "+1.0, not met"
    assert verdicts["Best ensemble"] == ("Stacking [faces]: +1.00, +1.50 against resnet50 + flip", "not met")


def test_fer2013_report_only_needs_every_step_finished(tmp_path):
    from benchmarks.fer2013 import add_wall, steps, unfinished

    wall = tmp_path / "wall.json"
    todo = steps([0, 1])
    assert unfinished(wall, todo) == ["cv seed 0", "cv seed 1", "distillation seed 0", "distillation seed 1"]
    for step in ("cv seed 0", "cv seed 1", "distillation seed 0"):
        add_wall(wall, step, 60.0)
    assert unfinished(wall, todo) == ["distillation seed 1"]
    add_wall(wall, "distillation seed 1", 60.0)
    assert unfinished(wall, todo) == []
    assert add_wall(wall, "cv seed 0", 0.0)["cv seed 0"] == 60.0  # a report-only call adds nothing


def test_fer2013_report_only_refuses_an_unfinished_run_and_names_it(tmp_path):
    from benchmarks.fer2013 import add_wall, main

    (tmp_path / "data" / "train").mkdir(parents=True)
    out = tmp_path / "run"
    out.mkdir()
    add_wall(out / "wall.json", "cv seed 0", 60.0)
    results = tmp_path / "fer2013.md"
    with pytest.raises(SystemExit, match=r"run has not finished cv seed 1, distillation seed 0, distillation seed 1"):
        main(["--root", str(tmp_path / "data"), "--out", str(out), "--results", str(results), "--report-only"])
    assert not results.exists() and json.loads((out / "wall.json").read_text()) == {"cv seed 0": 60.0}


def test_fer2013_command_line_hides_this_machines_paths():
    from benchmarks.fer2013 import command_line

    assert command_line(["--seeds", "0", "1", "--out", "/work/run", "--results", "/home/me/fer2013.md",
                         "--root", "data/fer2013"]) == \
        "python benchmarks/fer2013.py --seeds 0 1 --out <out> --results <results> --root data/fer2013"


def test_fer2013_results_file_from_per_seed_rows(tmp_path):
    """The results file is written from the rows alone: every section, per-seed figures, goals."""
    import argparse

    from benchmarks.fer2013 import write_results

    members = ["inception_v3", "resnet50", "sppnet", "resnet18"]
    rows = {m: _rows([40.0 + i, 41.0 + i]) for i, m in enumerate(members)}
    rows |= {"resnet18 + flip": _rows([44.0, 45.0]), "HardVote": _rows([30.0, 30.5]),
             "SoftVote [faces]": _rows([45.0, 46.0]), "HardVote [regions]": _rows([30.0, 31.0]),
             "resnet18@mouth": _rows([33.0, 34.0]), "HardVote [experts]": _rows([35.0, 36.0]),
             "Stacking [faces + experts]": _rows([46.0, 47.5]), "resnet18#e1": _rows([40.0, 41.0]),
             "SoftVote [snapshots resnet18]": _rows([44.5, 45.5])}
    distill = {m: rows[m] for m in members} | {"resnet18.student": _rows([44.0, 45.0]), "SoftVote": _rows([46.0, 46.0]),
                                               "HardVote": _rows([45.0, 45.0])}
    data = {"counts": {"train": {"happy": 3, "sad": 2}, "test": {"happy": 1, "sad": 1}}, "duplicates": "none",
            "index": "2 images"}
    path = tmp_path / "fer2013.md"
    path.write_text("old\n## Notes by hand\nkeep me\n")
    wall = {"cv seed 0": 3000.0, "distillation seed 0": 600.0, "cv seed 1": 3000.0, "distillation seed 1": 660.0}
    write_results(path, argparse.Namespace(profile="cpu"), data, rows, distill, wall, members,
                  [], {"resnet18": [12.0, 13.0]}, {"resnet18": 1.0, "resnet50": 3.0, "sppnet": 0.5, "inception_v3": 4.0})
    text = path.read_text()
    for heading in ("## Table II: Whole faces", "## Table II: the paper's region vote with whole-face members",
                    "## Table II: region experts (the paper's design)", "## Cheap ensembles: snapshots",
                    "## Cheap ensembles: distillation", "## Inference cost", "## Reading"):
        assert heading in text, heading
    assert "| resnet18 + flip | 44.5 ± 0.7 |" in text and "| 44.0, 45.0 |" in text
    assert "| the four whole-face members (an ensemble on the face) | 8.50 | 8.5 |" in text
    assert "| Best member >= 62% in <= 30 min | resnet18: 43.0, 44.0 %, 12.0, 13.0 min | not met |" in text
    assert "cv seed 0 50.0 min; distillation seed 0 10.0 min; cv seed 1 50.0 min; distillation seed 1 11.0 min; " \
        "in all 121.0 min." in text
    assert "| Whole experiment (every seed's cv and student) <= 120 min, resumable | 121 min for 2 seed(s) | not met |" \
        in text
    assert text.rstrip().endswith("keep me")


def test_fer2013_wall_time_adds_up_over_resumed_calls(tmp_path):
    """Each call adds its seconds to its step in wall.json, so a resumed experiment reports its whole cost."""
    from benchmarks.fer2013 import add_wall

    path = tmp_path / "wall.json"
    add_wall(path, "cv seed 0", 60.0)  # a call that was killed after this step
    add_wall(path, "cv seed 0", 30.0)  # the call that resumed it
    wall = add_wall(path, "distillation seed 0", 15.0)
    assert wall == {"cv seed 0": 90.0, "distillation seed 0": 15.0}
    assert json.loads(path.read_text()) == wall
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall.json"]  # no temporary file left


def test_fer2013_runs_every_table_before_the_students():
    """Both seeds' Table II land in the results file before any student trains."""
    from benchmarks.fer2013 import steps

    assert steps([0, 1]) == [("cv", [0]), ("cv", [0, 1]), ("distillation", [0]), ("distillation", [0, 1])]
    assert steps([3], []) == [("cv", [3])]
    assert steps([0, 1], [1]) == [("cv", [0]), ("cv", [0, 1]), ("distillation", [1])]
