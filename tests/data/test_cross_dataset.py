"""Evaluation on another data set: a manifest with no split column and other classes."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import REPO

from lightning_fer import FERClassifier, FERDataModule
from lightning_fer.cli import main
from lightning_fer.data.sources import ManifestSource


def _other_dataset(trained_members, tmp_path):
    """The demo's images as another data set: no split column, no 'disgust' or 'fear', and the
    'neutral' faces relabelled 'contempt', a class the demo models never saw."""
    src_manifest = next((trained_members["dir"] / "synthetic").rglob("manifest.csv"))
    rows = list(csv.DictReader(open(src_manifest)))
    out = tmp_path / "other.csv"
    kept = []
    for r in rows:
        if r["label"] in ("disgust", "fear"):
            continue
        label = "contempt" if r["label"] == "neutral" else r["label"]
        kept.append({"path": str(src_manifest.parent / r["path"]), "label": label, "landmarks": r["landmarks"]})
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "landmarks"])
        w.writeheader()
        w.writerows(kept)
    return out, kept


def test_member_tested_on_a_data_set_with_other_classes(trained_members, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest, rows = _other_dataset(trained_members, tmp_path)
    ckpt = trained_members["ckpts"]["resnet50"]
    cli = main(["test", "--config", str(REPO / "configs" / "demo" / "resnet50.yaml"),
                "--data.init_args.source=manifest", f"--data.init_args.root={manifest}",
                "--data.init_args.folds.eval_split=all", "--data.init_args.loader.num_workers=0",
                "--data.init_args.records.cache_dir=cache", "--trainer.accelerator=cpu",
                "--trainer.enable_progress_bar=false", f"--ckpt_path={ckpt}"])
    dm, model = cli.datamodule, cli.model
    assert dm.class_names == ["happy", "sad", "surprise", "anger", "contempt"]  # 5 classes: the model has 7
    assert model.class_names == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
    contempt = sum(r["label"] == "contempt" for r in rows)
    match = dm.class_match["test"]
    assert match["unknown"] == {"contempt": contempt} and contempt > 0
    assert match["missing"] == ["neutral", "fear", "disgust"]
    assert match["kept"] == len(rows) - contempt
    listed = list(csv.DictReader(open(match["listing"])))
    assert len(listed) == contempt and all(r["class"] == "contempt" for r in listed)

    # The figures: the checkpoint's own predictions on the known-class images, by hand.
    ref = FERClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    ev = FERDataModule(ManifestSource(manifest), image_size=48, training={"augment": False},
                       folds={"eval_split": "all"}, records={"cache_dir": str(tmp_path / "cache")},
                       loader={"num_workers": 0})
    ev.prepare_data()
    ev.setup("test")
    ds = ev.datasets["test"]
    lookup = {n: ref.class_names.index(n) for n in ref.class_names}
    hits = total = 0
    with torch.no_grad():
        for i in range(len(ds)):
            name = ev.class_names[ds.source_labels[i]]
            if name not in lookup:
                continue
            pred = int(ref(ds[i]["views"][:1]).argmax(1))
            hits += pred == lookup[name]
            total += 1
    assert total == match["kept"]
    assert float(cli.trainer.callback_metrics["test/acc"]) == pytest.approx(hits / total, abs=1e-6)


def test_eval_split_all_refuses_fit_and_takes_every_image(trained_members, tmp_path):
    manifest, rows = _other_dataset(trained_members, tmp_path)
    dm = FERDataModule("manifest", str(manifest), image_size=32, training={"fraction": 0.5},
                       folds={"eval_split": "all"}, records={"cache_dir": str(tmp_path / "cache")},
                       loader={"num_workers": 0})
    dm.prepare_data()
    with pytest.raises(ValueError, match="eval_split='all' evaluates on every image"):
        dm.setup("fit")
    dm.setup("test")
    assert len(dm.datasets["test"]) == len(dm.datasets["val"]) == len(rows) and len(dm.datasets["train"]) == 0
    with pytest.raises(ValueError, match="eval_split must be"):
        FERDataModule("manifest", str(manifest), folds={"eval_split": "everything"})


def test_cross_dataset_script_writes_the_table(trained_members, tmp_path, monkeypatch):
    import yaml

    from benchmarks.cross_dataset import main as cross

    monkeypatch.chdir(tmp_path)
    manifest, rows = _other_dataset(trained_members, tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "models": {"demo": {"config": str(REPO / "configs" / "demo" / "sppnet.yaml"),
                            "ckpt": str(trained_members["ckpts"]["sppnet"])}},
        "datasets": {"own test split": trained_members["args"][:6],
                     "other": ["--data.init_args.source=manifest", f"--data.init_args.root={manifest}",
                               "--data.init_args.folds.eval_split=all", "--data.init_args.records.cache_dir=cache"]},
    }))
    out = tmp_path / "cross.md"
    text = cross(["--spec", str(spec), "--out", str(out), "--data.init_args.loader.num_workers=0", "--trainer.accelerator=cpu"])
    assert out.read_text() == text
    contempt = sum(r["label"] == "contempt" for r in rows)
    (row,) = [line for line in text.splitlines() if line.startswith("| demo |")]
    assert f"({len(rows) - contempt} images; {contempt} of unknown classes left out)" in row
    assert "demo on other: the data has no neutral, fear, disgust" in text


def test_cross_dataset_script_names_a_missing_checkpoint(tmp_path):
    import yaml

    from benchmarks.cross_dataset import main as cross

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"models": {"m": {"config": "configs/demo/sppnet.yaml", "ckpt": str(tmp_path / "no.ckpt")}},
                                    "datasets": {"d": []}}))
    with pytest.raises(SystemExit, match=r"model 'm': checkpoint .*no\.ckpt does not exist; train it first"):
        cross(["--spec", str(spec), "--out", str(tmp_path / "out.md")])
    assert not (tmp_path / "out.md").exists()


def test_labels_are_matched_by_name_when_the_data_lacks_the_models_first_class(synthetic_source, tmp_path,
                                                                                monkeypatch):
    """The data has as many classes as the model (7) but not the same ones: no neutral (the
    model's first class), and contempt (which the model does not know). The logged accuracy must
    equal a hand count that never touches the library's class indices: each image's prediction
    named with the checkpoint's class list, compared with the label written in the manifest."""
    monkeypatch.chdir(tmp_path)
    synthetic_source.load()
    src = next(synthetic_source.root.rglob("manifest.csv"))
    rows = []
    for r in csv.DictReader(open(src)):
        label = "contempt" if r["label"] == "neutral" else r["label"]
        rows.append({"path": str(src.parent / r["path"]), "label": label, "landmarks": r["landmarks"]})
    manifest = tmp_path / "other.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "landmarks"])
        w.writeheader()
        w.writerows(rows)
    ckpt = REPO / "tests" / "assets" / "checkpoints_v0" / "member.ckpt"
    cli = main(["test", "--config", str(REPO / "configs" / "demo" / "resnet50.yaml"),
                "--model.init_args.backbone=squeezenet1_1", "--data.init_args.image_size=64",
                "--data.init_args.source=manifest", f"--data.init_args.root={manifest}",
                "--data.init_args.folds.eval_split=all", "--data.init_args.loader.num_workers=2",  # workers copy the labels
                "--data.init_args.records.cache_dir=cache", "--trainer.accelerator=cpu", "--trainer.logger=false",
                "--trainer.enable_progress_bar=false", f"--ckpt_path={ckpt}"])
    assert cli.datamodule.class_names == ["happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]
    logged = float(cli.trainer.callback_metrics["test/acc"])

    ref = FERClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    ev = FERDataModule(ManifestSource(manifest), image_size=64, folds={"eval_split": "all"},
                       records={"cache_dir": str(tmp_path / "hand")}, loader={"num_workers": 0})
    ev.prepare_data()
    ev.setup("test")
    ds = ev.datasets["test"]
    written = {r["path"]: r["label"] for r in rows}
    hits = total = 0
    with torch.no_grad():
        for i in range(len(ds)):
            truth = written[ds.paths[i]]
            if truth not in ref.class_names:
                continue
            said = ref.class_names[int(ref(ds[i]["views"][:1]).argmax(1))]
            hits += said == truth
            total += 1
    assert total == sum(r["label"] != "contempt" for r in rows)
    assert hits > 0
    assert logged == pytest.approx(hits / total, abs=1e-6)
