"""Shipped models: loaded by name and hash-checked, used from every subcommand with
``--pretrained``, through ONNX Runtime at predict, and refused checkpoints said in one line."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO
from skimage import data as skdata

import lightning_fer
from lightning_fer import shipped, zoo
from lightning_fer.cli import main

NAMES = zoo.names()
pytestmark = pytest.mark.skipif(not NAMES, reason="no shipped models in lightning_fer/shipped (run benchmarks/ship.py)")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    d = tmp_path_factory.mktemp("astronaut")
    cv2.imwrite(str(d / "astronaut.jpg"), skdata.astronaut()[:, :, ::-1])
    return d / "astronaut.jpg"


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightning_fer", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=600)


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_model_loads_by_name_and_labels_the_astronaut_happy(name, astronaut, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = lightning_fer.pretrained(name)
    assert not model.training and model.class_names[1] == "happy"
    kind = zoo.registry()[name]["kind"]
    assert type(model).__name__ == ("FERClassifier" if kind == "member" else "EnsembleModule")
    out = tmp_path / "rows.csv"
    main(["predict", "--pretrained", name, "--data.predict.path", str(astronaut), "--data.predict.output", str(out),
          "--trainer.enable_progress_bar=false"])
    rows = [r for r in csv.DictReader(out.open()) if r["label"]]
    assert len(rows) == 1 and rows[0]["label"] == "happy", rows  # Eileen Collins, smiling


def test_fer2013_fast_loads_by_name_as_one_small_pass_a_face_with_its_checked_int8():
    """Issue 36: the shipped fast model is a quarter-width network with no test-time flip (one
    pass a face), measured on PublicTest, with an int8 version that passed its accuracy check."""
    assert "fer2013-fast" in NAMES, "fer2013-fast is not shipped (python -m benchmarks.ship --fast ...)"
    model = lightning_fer.pretrained("fer2013-fast")
    assert model.hparams.tta == "none" and sum(p.numel() for p in model.parameters()) < 350_000
    big = sum(p.numel() for p in lightning_fer.pretrained("fer2013").parameters())
    assert sum(p.numel() for p in model.parameters()) < big / 3
    entry = zoo.registry()["fer2013-fast"]
    assert entry["publictest"]["faces"] == zoo.registry()["fer2013"]["publictest"]["faces"]
    assert entry["int8"]["ok"] and entry["int8"]["faces"] == entry["publictest"]["faces"]
    (face,) = lightning_fer.analyze(np.asarray(skdata.astronaut()[50:210, 160:320].mean(-1), np.uint8),
                                    model="fer2013-fast", face_box="image", runtime="auto")
    assert face["label"] == "happy", face["probabilities"]


def test_a_corrupted_shipped_file_is_refused_and_named(tmp_path, monkeypatch):
    copy = tmp_path / "shipped"
    shutil.copytree(zoo.SHIPPED, copy)
    target = copy / zoo.registry()[NAMES[0]]["file"]
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
    monkeypatch.setattr(shipped, "SHIPPED", copy)
    monkeypatch.setattr(shipped, "REGISTRY", copy / "models.json")
    with pytest.raises(zoo.PretrainedError, match=f"{target}: SHA-256 .* does not match"):
        lightning_fer.pretrained(NAMES[0])
    with pytest.raises(zoo.PretrainedError, match="no shipped model of that name; shipped: "):
        lightning_fer.pretrained("affectnet-huge")


def test_the_listing_says_what_each_model_is_and_how_it_was_measured():
    proc = _cli("pretrained")
    assert proc.returncode == 0, proc.stderr
    for name in NAMES:
        entry = zoo.registry()[name]
        assert f"{name}\n" in proc.stdout and entry["sha256"][:16] in proc.stdout
    assert "macro F1 on FER2013 PublicTest" in proc.stdout and "research" in proc.stdout
    # each model's speed, measured where it was shipped (python -m benchmarks.ship --speed)
    assert proc.stdout.count("faces/s on one thread, pre-cropped faces") == len(NAMES)
    assert all(zoo.registry()[n]["speed"]["faces_per_s"] > 0 for n in NAMES)
    assert sum(e["bytes"] for e in zoo.registry().values()) <= 25_000_000  # together at most 25 MB


def test_test_on_48px_crops_with_the_shipped_model_prints_test_acc(fer2013_root, tmp_path):
    crops = tmp_path / "crops"
    for cls in ("happy", "surprise", "neutral"):
        (crops / cls).mkdir(parents=True)
        for f in sorted((fer2013_root / "val" / cls).iterdir())[:6]:
            shutil.copy(f, crops / cls / f.name)
    proc = _cli("test", "--pretrained", "fer2013", "--data.source", "folder", "--data.root", str(crops),
                "--data.folds.eval_split", "all", "--data.face_box", "image", "--trainer.enable_progress_bar=false",
                "--data.records.cache_dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/acc" in proc.stdout


def _video(path, frames: int = 4):
    """A 640x360 clip with one face: the astronaut's head, moving a little."""
    face = skdata.astronaut()[:260, 110:370, ::-1]
    face = cv2.resize(face, (300, 300))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (640, 360))
    for i in range(frames):
        frame = np.full((360, 640, 3), 90, np.uint8)
        frame[30:330, 150 + 10 * i:450 + 10 * i] = face
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize("name", NAMES)
def test_predict_through_onnx_runtime_equals_eager(name, astronaut, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(astronaut, media / "astronaut.jpg")
    _video(media / "clip.mp4")
    rows = {}
    for runtime in ("eager", "onnx"):
        out = tmp_path / f"{runtime}.csv"
        main(["predict", "--pretrained", name, "--data.predict.path", str(media), "--data.predict.output", str(out),
              "--data.predict.runtime", runtime, "--fast_path", "off", "--trainer.enable_progress_bar=false"])
        rows[runtime] = [r for r in csv.DictReader(out.open()) if r["label"]]
    eager, onnx = rows["eager"], rows["onnx"]
    assert len(eager) == len(onnx) >= 2 and any(r.get("frame") for r in eager)  # the photo and video frames
    cols = [c for c in eager[0] if c.startswith("p_")]
    for a, b in zip(eager, onnx):
        assert (a["file"], a.get("frame"), a["label"]) == (b["file"], b.get("frame"), b["label"])
        assert max(abs(float(a[c]) - float(b[c])) for c in cols) <= 1e-4
    assert list((tmp_path / "eager.csv").parent.glob("*.csv"))


def test_predict_labels_whole_pictures_with_face_box_image(fer2013_root, tmp_path, monkeypatch):
    """48 px crops: MTCNN finds no face in most of them; face_box image labels each one."""
    monkeypatch.chdir(tmp_path)
    crops = tmp_path / "crops"
    crops.mkdir()
    for f in sorted((fer2013_root / "val" / "happy").iterdir())[:5]:
        shutil.copy(f, crops / f.name)
    out = tmp_path / "rows.csv"
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", str(crops), "--data.face_box", "image",
          "--data.predict.output", str(out), "--trainer.enable_progress_bar=false"])
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and all(r["label"] and not r["error"] for r in rows)
    assert all(r["box"] == "[0.0, 0.0, 48.0, 48.0]" for r in rows)


@pytest.mark.parametrize(("option", "value"), [("--ckpt_path", "mine.ckpt"), ("--config", "configs/demo/sppnet.yaml")])
@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
def test_pretrained_with_a_ckpt_path_or_config_before_or_after_is_refused_in_one_line(tmp_path, option, value, before):
    given = [option, str(REPO / value) if option == "--config" else value]
    pretrained = ["--pretrained", "fer2013"]
    proc = _cli("test", *(given + pretrained if before else pretrained + given), cwd=tmp_path)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[lightning_fer]")]
    assert len(err) == 1 and f"drop {option}" in err[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything ran or wrote


def _unsafe_checkpoint(path):
    """A checkpoint holding a pickled function: the weights-only loader must refuse it."""
    good = torch.load(zoo.materialize("fer2013")[1], weights_only=True)
    good["callbacks"] = {"evil": print}
    torch.save(good, path)
    return path


def test_a_refused_checkpoint_stops_in_one_line_naming_the_file_and_object(tmp_path):
    bad = _unsafe_checkpoint(tmp_path / "evil.ckpt")
    config, _ = zoo.materialize("fer2013")
    for args in (["test", "--config", str(config), "--ckpt_path", str(bad)],
                 ["test", "--model=lightning_fer.EnsembleModule", f"--model.members=[{bad}]",
                  "--data=lightning_fer.FERDataModule", "--data.source=synthetic"]):
        proc = _cli(*args, "--trainer.enable_progress_bar=false", cwd=tmp_path)
        err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert len(err) == 1 and str(bad) in err[0] and "it holds print," in err[0], proc.stderr[-2000:]


def test_a_shipped_model_is_an_ensemble_member_and_a_teacher(tmp_path):
    from lightning_fer import EnsembleModule
    from lightning_fer.ensemble import SoftVote

    ens = EnsembleModule(["pretrained:fer2013", "pretrained:fer2013"], SoftVote(), views=["face"])
    x = torch.rand(2, 1, 1, 48, 48)
    single = lightning_fer.pretrained("fer2013")
    with torch.no_grad():
        assert torch.allclose(ens(x), single(x[:, 0]).softmax(-1), atol=1e-5)
    from lightning_fer.cv import Lineup
    from lightning_fer.cv.distill import teachers
    from lightning_fer.cv.plan import Plan

    lineup = Lineup(["unused.yaml"], teacher_members=["pretrained:fer2013"])
    plan = Plan([], tmp_path, tmp_path, lineup)
    assert list(teachers(plan, 0, None)) == ["pretrained:fer2013"]
    with pytest.raises(zoo.PretrainedError, match="not a shipped single model"):
        zoo.resolve_member("pretrained:nothing")


def test_export_and_validate_take_a_shipped_model_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lightning_fer.cli import main as cli_main

    out, diff = cli_main(["export", "--pretrained", "fer2013", "--format", "torchscript", "--output", str(tmp_path / "m.pt")])
    assert out.is_file() and diff <= 1e-4
    loaded = torch.jit.load(str(out))
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(loaded(x), lightning_fer.pretrained("fer2013")(x), atol=1e-4)
    with pytest.raises(zoo.PretrainedError, match="works with predict, test, validate, export, not 'fit'"):
        cli_main(["fit", "--pretrained", "fer2013"])


def test_a_bad_predict_runtime_is_named():
    from lightning_fer.predict.inputs import PredictOptions
    from lightning_fer.predict.runtimes import OnnxPredict

    with pytest.raises(ValueError, match="--data.predict.runtime 'tpu': must be auto, eager, onnx or int8"):
        PredictOptions("photo.jpg", runtime="tpu")
    with pytest.raises(ValueError, match="predict.runtime must be one of"):
        OnnxPredict("tpu")
