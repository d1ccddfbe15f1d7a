"""``cv`` as issue 14 runs it: region experts, flip test-time augmentation, snapshot ensembles,
distillation, calibration columns, and a member killed mid-training that resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_fer.cli import main
from tests.conftest import REPO, tiny_args

SPP = str(REPO / "configs" / "demo" / "sppnet.yaml")


def test_experts_snapshots_flip_and_students_in_one_cv_run(tmp_path, monkeypatch):
    """One real cv run on the tiny demo set: a whole-face member, two region experts (the mouth
    at its own size), a cyclic schedule whose cycle ends are snapshots, the mirrored face as a
    view, and a student distilled from the face member."""
    monkeypatch.chdir(tmp_path)
    argv = ["cv", "--lineup.members", json.dumps([SPP]), "--output_dir", "cv", "--folds.folds", "[0]", "--folds.num_folds", "3",
            "--collect.views", '["face", "nose", "mouth"]', "--collect.flip", "true",
            "--experts.regions", '["mouth", "nose"]', "--experts.sizes", '{"mouth": 32}',
            "--lineup.students", json.dumps([SPP]),
            "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8), "--trainer.max_epochs=2",
                                       "--trainer.limit_train_batches=2", "--model.init_args.optim.scheduler=cosine_restarts",
                                       "--model.init_args.optim.cycles=2"])]
    result = main(argv)
    run = tmp_path / "cv" / "fold0"
    done = {p.parent.name: json.loads(p.read_text()) for p in run.rglob("done.json")}
    assert set(done) == {"sppnet", "sppnet@mouth", "sppnet@nose", "sppnet.student"}
    # Each expert is trained on its region, at its size, and says so in its checkpoint.
    for name, region, size in (("sppnet@mouth", "mouth", 32), ("sppnet@nose", "nose", 64), ("sppnet", "face", 64)):
        ckpt = torch.load(done[name]["checkpoint"], map_location="cpu", weights_only=True)
        assert ckpt["lightning_fer"]["region"] == region and done[name]["region"] == region
        assert ckpt["hyper_parameters"]["image_size"] == size
        assert len(done[name]["snapshots"]) == 2  # epochs 0 and 1: the ends of the 2 cycles
    d = torch.load(run / "predictions.pt", weights_only=True)
    views = d["views"]
    assert views == ["face", "nose", "mouth", "face_flip"]
    names = d["names"]
    col = {n: d["collected"][names.index(n)] for n in names}
    # Bound to their region: an expert (and its snapshots) is run on its region only.
    assert col["sppnet@mouth"].tolist() == [False, False, True, False]
    assert col["sppnet@nose#e1"].tolist() == [False, True, False, False]
    assert col["sppnet"].tolist() == [True, True, True, True]  # the face member: every view and the mirror
    assert col["sppnet#e0"].tolist() == [True, False, False, True]  # snapshots and students: the face
    assert col["sppnet.student"].tolist() == [True, False, False, True]
    assert not d["test_logits"][:, names.index("sppnet@mouth"), [0, 1, 3]].any()
    # The expert's row is its logits on its region.
    from lightning_fer.cv.report import scores

    i = names.index("sppnet@mouth")
    mine = scores(d["test_logits"][:, i, 2].softmax(-1), d["test_labels"], 7)
    assert result["rows"]["sppnet@mouth"][0]["acc"] == pytest.approx(mine["acc"])
    rows = set(result["rows"])
    for row in ("sppnet", "sppnet + flip", "sppnet@mouth", "sppnet@nose", "sppnet.student", "sppnet#e0",
                "HardVote", "HardVote [faces]", "HardVote [regions]", "HardVote [experts]",
                "SoftVote [faces + experts]", "Stacking [experts]", "SoftVote [snapshots sppnet]",
                "SoftVote [snapshots sppnet@mouth]"):
        assert row in rows, row
    # The student learned from the face member's soft targets on the training images.
    targets = torch.load(tmp_path / "cv" / "fold0" / "soft_targets.pt", weights_only=True)
    known = ~torch.isnan(targets["probs"]).any(1)
    assert targets["teachers"] == ["sppnet"] and 0 < int(known.sum()) < len(known)
    from lightning_fer.cv.distill import teachers

    plan = _plan(tmp_path / "cv", snapshots_of="sppnet")
    assert list(teachers(plan, 0, None)) == ["sppnet#e0", "sppnet#e1"]
    plan = _plan(tmp_path / "cv", "sppnet", teachers=["sppnet", "sppnet#e1"])
    assert list(teachers(plan, 0, None)) == ["sppnet", "sppnet#e1"]
    with pytest.raises(ValueError, match="sppnet#e7"):
        teachers(_plan(tmp_path / "cv", "sppnet", teachers=["sppnet#e7"]), 0, None)
    assert torch.allclose(targets["probs"][known].sum(1), torch.ones(int(known.sum())), atol=1e-5)
    # ... and they are the ensemble's soft vote: the teacher's softmax on the face and its mirror,
    # averaged, recomputed here on a few training faces.
    from lightning_fer.cv.predictions import run_datamodule
    from lightning_fer.fastpath import choose
    from lightning_fer.models.classifier import FERClassifier

    teacher = FERClassifier.load_from_checkpoint(done["sppnet"]["checkpoint"], map_location="cpu", weights_only=True).eval()
    plan = _plan(tmp_path / "cv", "sppnet", overrides=json.loads(argv[argv.index("--lineup.overrides") + 1]))
    dm = run_datamodule(plan, 0, ["face"], SPP, image_size=64, training={"augment": False})
    batch = dm.on_after_batch_transfer(next(iter(dm.loader("train", distributed=False))), 0)
    x = teacher._input(batch)[:4]
    with torch.no_grad(), choose(plan.collect.fast_path).autocast():
        mine = (teacher(x).float().softmax(-1) + teacher(x.flip(-1)).float().softmax(-1)) / 2
    assert torch.allclose(targets["probs"][batch["index"][:4]], mine, atol=5e-3)
    # Kept while the same teachers' same checkpoints made them; made again for other teachers.
    from lightning_fer.cv.distill import write_soft_targets

    path, stamp = tmp_path / "cv" / "fold0" / "soft_targets.pt", (tmp_path / "cv" / "fold0" / "soft_targets.pt").stat().st_mtime_ns
    same = _plan(tmp_path / "cv", "sppnet", teachers=["sppnet"], overrides=plan.lineup.overrides, flip=True)
    assert write_soft_targets(same, 0, None) == path and path.stat().st_mtime_ns == stamp
    other = _plan(tmp_path / "cv", "sppnet", teachers=["sppnet#e1"], overrides=plan.lineup.overrides, flip=True)
    write_soft_targets(other, 0, None)
    again = torch.load(path, weights_only=True)
    assert again["teachers"] == ["sppnet#e1"] and list(again["sources"]["teachers"]) == ["sppnet#e1"]
    assert not torch.equal(torch.nan_to_num(again["probs"]), torch.nan_to_num(targets["probs"]))
    student = torch.load(done["sppnet.student"]["checkpoint"], map_location="cpu", weights_only=True)
    assert student["hyper_parameters"]["distill"]["teacher"].endswith("soft_targets.pt")
    # A member whose checkpoint changed (retrained) is collected again; the others' logits are kept.
    logits = run / "logits"
    stamps = {f.name: f.stat().st_mtime_ns for f in logits.glob("*.pt")}
    ckpt = Path(done["sppnet.student"]["checkpoint"])
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    main(argv)
    assert (logits / "sppnet.student.pt").stat().st_mtime_ns != stamps["sppnet.student.pt"]
    assert (logits / "sppnet.pt").stat().st_mtime_ns == stamps["sppnet.pt"]
    d = torch.load(run / "predictions.pt", weights_only=True)
    assert f"({ckpt.stat().st_mtime_ns})" in d["sources"][d["names"].index("sppnet.student")]
    # Calibration columns: ECE in percent, NLL in nats.
    table = (tmp_path / "cv" / "table2.md").read_text()
    assert "| ECE | NLL |" in table
    csv_rows = {r["model"]: r for r in csv.DictReader(open(tmp_path / "cv" / "table2.csv"))}
    assert float(csv_rows["sppnet"]["nll mean"]) == pytest.approx(result["rows"]["sppnet"][0]["nll"], abs=1e-3)
    assert float(csv_rows["sppnet"]["ece mean"]) == pytest.approx(100 * result["rows"]["sppnet"][0]["ece"], abs=1e-3)
    # Structured rows: what each row is, in columns (readers select by them, not by names).
    kinds = {n: (r["kind"], r["member"], r["region"], r["strategy"], r["group"]) for n, r in csv_rows.items()}
    assert kinds["sppnet"] == ("member", "sppnet", "face", "", "")
    assert kinds["sppnet@mouth"] == ("expert", "sppnet@mouth", "mouth", "", "")
    assert kinds["sppnet#e0"] == ("snapshot", "sppnet", "face", "", "")
    assert kinds["sppnet.student"] == ("student", "sppnet.student", "face", "", "")
    assert kinds["SoftVote [faces + experts]"] == ("strategy", "", "", "SoftVote", "faces + experts")
    assert csv_rows["sppnet + flip"]["flip"] == "True" and csv_rows["sppnet"]["flip"] == "False"
    per_run = list(csv.DictReader(open(tmp_path / "cv" / "table2_runs.csv")))
    assert {(r["model"], r["fold"], r["seed"]) for r in per_run if r["model"] == "sppnet"} == {("sppnet", "0", "")}
    assert csv_rows["sppnet"]["acc90_agree mean"] == "" and csv_rows["HardVote"]["acc90_agree mean"] != ""


def _plan(out, snapshots_of, teachers=None, overrides=(), flip=False):
    from lightning_fer.cv import Collect, Experts, Folds, Lineup
    from lightning_fer.cv.plan import Plan, member_specs

    lineup = Lineup([SPP], students=[SPP], teacher_members=teachers or [f"{snapshots_of}#snapshots"],
                    overrides=list(overrides), monitor="val/acc")
    experts = Experts(["mouth", "nose"])
    return Plan(member_specs(lineup, experts), out, out, lineup, Folds([0], 3),
                Collect(["face", "nose", "mouth"], flip=flip, batch_size=8, device="cpu"), experts)


def test_flip_rows_average_the_image_and_its_mirror(tmp_path, monkeypatch):
    """A member's "+ flip" row scores the mean of its probabilities on the face and the mirror."""
    from lightning_fer.cv.report import scores

    monkeypatch.chdir(tmp_path)
    result = main(["cv", "--lineup.members", json.dumps([SPP]), "--output_dir", "cv", "--folds.folds", "[0]", "--folds.num_folds", "3",
                   "--collect.views", '["face"]', "--collect.flip", "true",
                   "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8), "--trainer.max_epochs=1",
                                              "--trainer.limit_train_batches=2"])])
    d = torch.load(tmp_path / "cv" / "fold0" / "predictions.pt", weights_only=True)
    probs = d["test_logits"][:, 0].softmax(-1)  # [N, views (face, face_flip), C]
    expect = scores(probs.mean(1), d["test_labels"], 7)
    assert {k: result["rows"]["sppnet + flip"][0][k] for k in expect} == pytest.approx(expect)
    # Soft vote over one member with the mirror: the same average.
    assert {k: result["rows"]["SoftVote"][0][k] for k in expect} == pytest.approx(expect)


def _wait_for(path, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.is_file():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def test_killed_cv_resumes_the_half_trained_member_from_its_last_checkpoint(tmp_path):
    """SIGKILL a real cv process once its member has written ``last.ckpt``; the rerun trains on
    from that checkpoint (epochs, optimiser and schedule) instead of starting again."""
    overrides = [*tiny_args(tmp_path / "synthetic", subjects=8), "--trainer.limit_train_batches=2",
                 "--trainer.limit_val_batches=1"]
    common = ["--lineup.members", json.dumps([SPP]), "--output_dir", str(tmp_path / "cv"), "--folds.folds", "[0]",
              "--folds.num_folds", "3", "--collect.views", '["face"]', "--strategies",
              '[{"class_path": "lightning_fer.ensemble.SoftVote"}]']
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_fer", "cv", *common, "--lineup.overrides",
                             json.dumps([*overrides, "--trainer.max_epochs=200"])],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "cv" / "fold0" / "sppnet" / "checkpoints" / "last.ckpt"
    try:
        assert _wait_for(last, proc), f"no last.ckpt before the process ended: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
        time.sleep(1.0)  # into the next epoch
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    member = tmp_path / "cv" / "fold0" / "sppnet"
    assert not (member / "done.json").exists()
    killed_at = torch.load(last, map_location="cpu", weights_only=True)
    epoch = killed_at["epoch"]
    assert killed_at["global_step"] == 2 * (epoch + 1)
    stop = epoch + 3  # the rerun finishes two more epochs
    main(["cv", *common, "--lineup.overrides", json.dumps([*overrides, f"--trainer.max_epochs={stop}"])])
    before = json.loads((member / "elapsed.json").read_text())["seconds"]
    assert before > 0  # the killed attempt's time, written at its epoch ends
    done = json.loads((member / "done.json").read_text())
    assert done["resumed_from"] == str(last)
    assert done["seconds"] > before  # both attempts counted
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["global_step"] == 2 * stop
    assert final["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == stop
    # The optimiser went on from its state: AdamW's step count is the total number of steps.
    state = final["optimizer_states"][0]["state"]
    assert int(next(iter(state.values()))["step"]) == 2 * stop
    # The rerun's log starts after the epoch the kill interrupted, not at 0.
    logs = sorted((member / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    epochs = {int(float(r["epoch"])) for r in csv.DictReader(open(logs[-1])) if r.get("epoch")}
    assert min(epochs) >= epoch + 1 and max(epochs) == stop - 1


def test_snapshots_are_collected_at_their_own_size_beside_a_larger_first_member(tmp_path, monkeypatch):
    """Inception V3 (80 px; 75 at least) listed first and SPP-net's snapshots at 64 px: the
    snapshots' data module comes from a config that takes 64 px (Inception V3's refuses it). With a
    part among the views, the members and the snapshots (face only) are collected apart."""
    import yaml

    monkeypatch.chdir(tmp_path)
    cyclic = yaml.safe_load(open(SPP))
    cyclic["model"]["init_args"]["optim"] = {"scheduler": "cosine_restarts", "cycles": 2}
    cyclic["base"] = str(REPO / "configs" / "base" / "trainer.yaml")  # a copy elsewhere names its base absolutely
    (tmp_path / "sppnet.yaml").write_text(yaml.safe_dump(cyclic))
    result = main(["cv", "--lineup.members", json.dumps([str(REPO / "configs" / "demo" / "inception_v3.yaml"),
                                                  str(tmp_path / "sppnet.yaml")]),
                   "--output_dir", "cv", "--folds.folds", "[0]", "--folds.num_folds", "3", "--collect.views", '["face", "mouth"]',
                   "--strategies", '[{"class_path": "lightning_fer.ensemble.SoftVote"}]',
                   "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8), "--trainer.max_epochs=2",
                                              "--trainer.limit_train_batches=1"])])
    assert "SoftVote [snapshots sppnet]" in result["rows"] and "sppnet#e1" in result["rows"]
    # Each network sees the faces drawn at its own size: SPP-net's best checkpoint (collected beside
    # Inception V3) and its snapshot of the same epoch are the same weights, so the same logits.
    run = tmp_path / "cv" / "fold0"
    done = json.loads((run / "sppnet" / "done.json").read_text())
    epoch = torch.load(done["checkpoint"], map_location="cpu", weights_only=False)["epoch"]
    best, snap = (torch.load(run / "logits" / f"{n}.pt", weights_only=True) for n in ("sppnet", f"sppnet#e{epoch}"))
    face = best["views"].index("face")
    torch.testing.assert_close(best["test_logits"][:, face], snap["test_logits"][:, 0])


def test_bad_expert_options_are_named_before_anything_trains(tmp_path, monkeypatch):
    from lightning_fer.cv import Collect, Experts, Lineup, run_cv

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"expert regions must be among .*'chin'"):
        run_cv(Lineup([SPP]), output_dir="cv", experts=Experts(["chin"]))
    with pytest.raises(ValueError, match=r"expert regions \['mouth'\] are not among views \['face'\]: add them"):
        run_cv(Lineup([SPP]), output_dir="cv", collect=Collect(["face"]), experts=Experts(["mouth"]))
    with pytest.raises(ValueError, match="distinct file names"):
        run_cv(Lineup([SPP, SPP]), output_dir="cv")
    assert not list((tmp_path / "cv").rglob("*.ckpt"))  # nothing was trained


def test_cv_and_test_report_the_same_figures_for_the_same_strategy(tmp_path, monkeypatch):
    """One metric collection and one masking rule: Table II's accuracy, ECE and NLL for a
    strategy equal what ``test`` logs for an EnsembleModule of the same member and strategy on the
    same test split."""
    import lightning as L

    from lightning_fer import EnsembleModule
    from lightning_fer.build import build
    from lightning_fer.ensemble import SoftVote, Stacking

    monkeypatch.chdir(tmp_path)
    overrides = [*tiny_args(tmp_path / "synthetic", subjects=8), "--trainer.max_epochs=1", "--trainer.limit_train_batches=3"]
    result = main(["cv", "--lineup.members", json.dumps([SPP]), "--output_dir", "cv", "--folds.folds", "[0]", "--folds.num_folds", "3",
                   "--collect.fast_path", "off", "--lineup.overrides", json.dumps(overrides), "--strategies",
                   '[{"class_path": "lightning_fer.ensemble.SoftVote"}, {"class_path": "lightning_fer.ensemble.Stacking"}, '
                   '{"class_path": "user_strategies.NamedLikeAMember"}]'])
    # A user's strategy named like the member is filed as a strategy, beside the member's own row.
    assert result["what"]["sppnet"]["kind"] == "member"
    assert result["what"]["sppnet (strategy)"] == {"kind": "strategy", "member": "", "region": "", "strategy": "sppnet",
                                                   "group": "all views", "flip": False, "voters": "sppnet"}
    ckpt = json.loads((tmp_path / "cv/fold0/sppnet/done.json").read_text())["checkpoint"]
    for strategy, row in ((SoftVote(), "SoftVote"), (Stacking(), "Stacking")):
        dm = build(SPP, overrides, {"data": {"init_args": {"folds": {"fold": 0, "num_folds": 3}}}}).datamodule
        ens = EnsembleModule([ckpt], strategy, views=["face"])
        trainer = L.Trainer(accelerator="cpu", precision="32-true", logger=False, enable_progress_bar=False)
        (logged,) = trainer.test(ens, datamodule=dm, verbose=False)
        (cv_row,) = result["rows"][row]
        for metric in ("acc", "balanced_acc", "f1", "ece", "nll"):
            assert logged[f"test/{metric}"] == pytest.approx(cv_row[metric], abs=1e-5), (row, metric)


def test_structured_rows_drive_the_reading_groups_and_bags(tmp_path, monkeypatch):
    """One real cv run with a bagged copy, a user's group of members, and a user's strategy named
    like a member (``sppnet``) and like a region expert (``sppnet@mouth``): the rows say what each
    is, the table, the picture and the gains are computed from those columns, and the strategy
    is never taken for the member."""
    from lightning_fer.cv.report import ensemble_gains, read_records

    monkeypatch.chdir(tmp_path)
    result = main(["cv", "--lineup.members", json.dumps([SPP]), "--lineup.bags", '{"sppnet": 1}', "--output_dir", "cv",
                   "--folds.folds", "[0]", "--folds.num_folds", "3", "--folds.seeds", "[0, 1]", "--collect.flip", "true",
                   "--lineup.member_groups", '{"pair": ["sppnet", "sppnet.bag1"]}',
                   "--strategies", json.dumps([{"class_path": "lightning_fer.ensemble.SoftVote"},
                                               {"class_path": "user_strategies.NamedLikeAMember"},
                                               {"class_path": "user_strategies.NamedLikeAMember",
                                                "init_args": {"row_name": "sppnet@mouth"}}]),
                   "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8),
                                              "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])])
    records = read_records(tmp_path / "cv")
    assert [r["model"] for r in records] == [r["model"] for r in result["records"]]  # the CSV is the rows
    kinds = {r["model"]: r["kind"] for r in records}
    assert kinds["sppnet"] == kinds["sppnet.bag1"] == kinds["sppnet + flip"] == "member"
    assert kinds["sppnet (strategy)"] == kinds["sppnet@mouth"] == "strategy"  # named like members, still strategies
    by = {(r["model"], r["seed"]): r for r in records}
    assert {r["seed"] for r in records} == {0, 1}
    pair = by["SoftVote [pair]", 0]
    assert pair["group"] == "pair" and pair["voters"] == "sppnet;sppnet.bag1" and pair["flip"] is True
    assert by["SoftVote", 0]["voters"] == "sppnet;sppnet.bag1" and by["sppnet", 0]["voters"] == "sppnet"
    # The bag trained on its own resample: its figures are its own.
    bags = json.loads((tmp_path / "cv" / "fold0-seed0" / "sppnet.bag1" / "done.json").read_text())
    assert bags["checkpoint"] != json.loads((tmp_path / "cv" / "fold0-seed0" / "sppnet" / "done.json").read_text())["checkpoint"]
    # The gains are read from columns: the best member is a member row, the ensemble a strategy row.
    g = ensemble_gains(records, include=["sppnet"])
    assert kinds[g["member"]] == "member" and kinds[g["ensemble"]] == "strategy" and g["seeds"] == [0, 1]
    expected = [by[g["ensemble"], s]["acc"] - by[g["member"], s]["acc"] for s in (0, 1)]
    assert g["gain_by_seed"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="voters include"):
        ensemble_gains(records, include=["resnet50"])
    assert (tmp_path / "cv" / "table2_acc.png").stat().st_size > 1000
    md = (tmp_path / "cv" / "table2.md").read_text()
    assert "| sppnet (strategy) |" in md and "| SoftVote [pair] |" in md


def test_bad_member_groups_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["cv", "--lineup.members", json.dumps([SPP]), "--output_dir", "cv", "--folds.folds", "[0]", "--folds.num_folds", "3"]
    with pytest.raises(ValueError, match="member_groups: pair: \\['resnet50'\\]"):
        main([*base, "--lineup.member_groups", '{"pair": ["sppnet", "resnet50"]}'])
    with pytest.raises(ValueError, match="a label cv uses itself"):
        main([*base, "--lineup.member_groups", '{"faces": ["sppnet"]}'])
    assert not (tmp_path / "cv" / "fold0").exists()


def test_learning_strategies_fit_over_bagged_and_fractional_members(tmp_path, monkeypatch):
    """A bag (bootstrap resample) and a member on half its folds (training.fraction) train on other
    images than the collected data, but were held out from the same fold: the leak check builds
    each one's data as cv built it for them, and stacking and ensemble selection fit."""
    monkeypatch.chdir(tmp_path)
    result = main(["cv", "--lineup.members", json.dumps([SPP]), "--lineup.bags", '{"sppnet": 1}', "--output_dir", "cv",
                   "--folds.folds", "[0]", "--folds.num_folds", "3",
                   "--lineup.member_overrides", json.dumps({"sppnet": ["--data.init_args.training.fraction=0.5"]}),
                   "--strategies", json.dumps([{"class_path": "lightning_fer.ensemble.Stacking"},
                                               {"class_path": "lightning_fer.ensemble.EnsembleSelection"}]),
                   "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8),
                                              "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])])
    assert {"Stacking", "EnsembleSelection", "sppnet", "sppnet.bag1"} <= set(result["rows"])
