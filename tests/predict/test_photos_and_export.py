"""Prediction on real photos through the CLI, and export checked against eager outputs."""

from __future__ import annotations

import csv
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO
from skimage import data as skdata

from lightning_fer import EnsembleModule, FERClassifier
from lightning_fer.cli import main
from lightning_fer.ensemble import HardVote, SoftVote, Stacking
from lightning_fer.export import export


@pytest.fixture
def photos(tmp_path):
    """The astronaut (one face), two astronauts side by side (two faces: no package we depend on
    ships a group photo), a coffee cup (no face) and a text file named .jpg (unreadable)."""
    d = tmp_path / "photos"
    d.mkdir()
    astro = skdata.astronaut()
    cv2.imwrite(str(d / "astronaut.jpg"), astro[:, :, ::-1])
    cv2.imwrite(str(d / "two.jpg"), np.hstack([astro, astro[:, ::-1]])[:, :, ::-1])
    cv2.imwrite(str(d / "coffee.png"), skdata.coffee()[:, :, ::-1])
    (d / "notes.jpg").write_text("not a picture")
    return d


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_predict_on_photos_through_the_cli(trained_members, photos, tmp_path, monkeypatch, caplog, fmt):
    monkeypatch.chdir(tmp_path)
    ckpt = trained_members["ckpts"]["sppnet"]
    out = tmp_path / f"faces.{fmt}"
    with caplog.at_level(logging.WARNING, logger="lightning_fer"):
        main(["predict", "--config", str(REPO / "configs/demo/sppnet.yaml"), *trained_members["args"],
              f"--ckpt_path={ckpt}", f"--data.predict.path={photos}", f"--data.predict.output={out}",
              f"--data.predict.annotate_dir={tmp_path / 'annotated'}"])
    assert "trained on the synthetic demo faces only" in caplog.text
    rows = json.loads(out.read_text()) if fmt == "json" else list(csv.DictReader(open(out)))
    by_file: dict[str, list] = {}
    for r in rows:
        by_file.setdefault(r["file"].rsplit("/", 1)[-1], []).append(r)
    assert len([r for r in by_file["astronaut.jpg"] if r["label"]]) == 1
    assert len([r for r in by_file["two.jpg"] if r["label"]]) == 2
    assert by_file["coffee.png"][0]["error"].startswith("no face found")
    assert "not an image" in by_file["notes.jpg"][0]["error"]
    face = by_file["astronaut.jpg"][0]
    probs = [float(face[f"p_{c}"]) for c in ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")]
    assert sum(probs) == pytest.approx(1, abs=1e-3) and face["label"] in ("neutral", "happy", "sad", "surprise",
                                                                           "fear", "disgust", "anger")
    box = json.loads(face["box"]) if fmt == "csv" else face["box"]
    assert 150 < box[0] < box[2] < 300  # the astronaut's face
    assert (tmp_path / "annotated" / "two_annotated.jpg").stat().st_size > 10_000


def _members():
    torch.manual_seed(0)
    return [FERClassifier("sppnet", image_size=64), FERClassifier("resnet18", image_size=64),
            FERClassifier("sppnet", image_size=64, region="mouth")]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_member_and_ensembles_match_eager(tmp_path, fmt):
    ext = "pt" if fmt == "torchscript" else "onnx"
    path, diff = export(_members()[0], tmp_path / f"member.{ext}", fmt)
    assert path.is_file() and diff < 1e-4
    logits = torch.randn(40, 3, 2, 7)
    for strategy in (HardVote(), SoftVote(calibrate=True), Stacking()):
        ens = EnsembleModule(_members(), strategy, views=["face", "mouth"])
        if strategy.requires_fit:
            strategy.fit(logits, logits[:, 0, 0].argmax(-1), ens.mask)
        path, diff = export(ens, tmp_path / f"{strategy.name.split()[0]}.{ext}", fmt)
        assert path.is_file() and diff < 1e-4, (strategy.name, diff)


def test_export_subcommand(trained_members, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = trained_members["ckpts"]["resnet50"]
    path, diff = main(["export", "--config", str(REPO / "configs/demo/resnet50.yaml"), *trained_members["args"],
                       "--ckpt_path", str(ckpt), "--format=torchscript", "--output", str(tmp_path / "r50.pt")])
    assert diff < 1e-4
    loaded = torch.jit.load(str(path))
    ref = FERClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ref(x), atol=1e-4, rtol=1e-4)


def test_onnx_files_are_self_contained_and_leave_nothing_behind(tmp_path):
    """An exported member and an exported ensemble, each copied alone into an empty folder, run
    in onnxruntime and match eager; repeated exports leave only the files asked for."""
    import shutil

    import onnxruntime as ort

    out = tmp_path / "export"
    members = _members()
    ens = EnsembleModule(members, SoftVote(), views=["face", "mouth"]).eval()
    for _ in range(2):  # a second export over the first: still nothing else in the folder
        export(members[0], out / "member.onnx", "onnx")
        export(ens, out / "ensemble.onnx", "onnx")
    assert sorted(p.name for p in out.iterdir()) == ["ensemble.onnx", "member.onnx"]
    for name, module, x in (("member.onnx", members[0], torch.randn(3, 3, 64, 64)),
                            ("ensemble.onnx", ens, torch.randn(3, 2, 3, 64, 64))):
        alone = tmp_path / f"alone_{name}"
        alone.mkdir()
        shutil.copy(out / name, alone / name)
        sess = ort.InferenceSession(str(alone / name), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
        with torch.no_grad():
            torch.testing.assert_close(got, module.eval()(x), atol=1e-4, rtol=1e-4)
    # A failed check removes what it wrote.
    with pytest.raises(RuntimeError, match="differs from the eager one"):
        export(members[0], out / "strict.onnx", "onnx", atol=-1.0)
    assert sorted(p.name for p in out.iterdir()) == ["ensemble.onnx", "member.onnx"]
