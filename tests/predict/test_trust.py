"""Prediction a person can trust (issue 34): a row for every input, written afresh; phone photos
upright; huge images bounded; the cached shipped model checked; boxes on every video frame;
annotated copies at their relative paths; progress; user errors in one line; a help that shows
predict's own options; no training data read and no logger folder at predict; empty metric
batches; and the one-call Python API equal to the CLI."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO
from PIL import Image
from skimage import data as skdata

import lightning_fer
from lightning_fer import zoo
from lightning_fer.cli import main

pytestmark = pytest.mark.skipif("fer2013" not in zoo.names(), reason="the shipped fer2013 model is not installed")


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cli(*args: str, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightning_fer", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env={**os.environ, **(env or {})})


def _astronaut() -> np.ndarray:
    return skdata.astronaut()  # RGB, 512 px, one smiling face


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_FER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _mixed_folder(root: Path) -> Path:
    """Good photos (two with the same name in different folders), a decompression bomb, an empty
    file, text named .jpg, a truncated JPEG, a 1x1 image, a photo without a face, a blank video."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    bgr = _astronaut()[:, :, ::-1]
    cv2.imwrite(str(root / "a" / "astronaut.jpg"), bgr)
    cv2.imwrite(str(root / "b" / "astronaut.jpg"), bgr)
    Image.new("1", (14000, 14000)).save(root / "bomb.png")  # about 24 KB, 196 million pixels
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a photo")
    (root / "truncated.jpg").write_bytes((root / "a" / "astronaut.jpg").read_bytes()[:3000])
    cv2.imwrite(str(root / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(root / "noface.jpg"), np.full((200, 200, 3), 128, np.uint8))
    (root / "blank.mp4").write_bytes(b"")
    return root


def test_a_mixed_folder_gives_a_row_for_every_input_and_no_traceback(home):
    _mixed_folder(home / "photos")
    out = home / "runs" / "predict" / "predictions.csv"
    out.parent.mkdir(parents=True)
    out.write_text("file,label\nold_run.jpg,happy\n")  # a previous run's rows must not survive
    proc = _cli("predict", "--pretrained", "fer2013", "--data.predict.path", "photos", "--data.predict.annotate_dir",
                "annotated", cwd=home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    rows = {Path(r["file"]).relative_to("photos").as_posix(): r for r in _rows(out)}
    assert "old_run.jpg" not in str(rows)
    assert rows["a/astronaut.jpg"]["label"] == rows["b/astronaut.jpg"]["label"] == "happy"
    reasons = {k: r["error"] for k, r in rows.items() if r["error"]}
    assert "decompression bomb" in reasons["bomb.png"]
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert "not an image" in reasons["text.jpg"]
    assert "cannot decode" in reasons["truncated.jpg"]
    assert "smaller than 2x2" in reasons["tiny.png"]
    assert reasons["noface.jpg"].startswith("no face found")
    assert "cannot be opened as a video" in reasons["blank.mp4"]
    assert len(rows) == 9
    summary = [ln for ln in proc.stderr.splitlines() if "predict: " in ln]
    assert summary and "9 input(s), 2 face(s), 1 input(s) without a face, 6 unreadable" in summary[-1]
    assert str(out.relative_to(home)) in summary[-1]
    # same-named photos in different folders: each annotated copy at its own relative path
    assert (home / "annotated" / "a" / "astronaut_annotated.jpg").is_file()
    assert (home / "annotated" / "b" / "astronaut_annotated.jpg").is_file()
    # predict leaves no logger folder and no saved config in the working directory
    assert not (home / "lightning_logs").exists() and not (home / "config.yaml").exists()


@pytest.mark.parametrize("case", ["noface_photo", "empty_folder"])
def test_no_face_anywhere_still_writes_the_rows_afresh(home, case):
    inputs = home / "in"
    inputs.mkdir()
    if case == "noface_photo":
        cv2.imwrite(str(inputs / "wall.jpg"), np.full((120, 160, 3), 200, np.uint8))
    out = home / "p.csv"
    out.write_text("file,label\nold_run.jpg,happy\n")
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", str(inputs), "--data.predict.output", str(out)])
    rows = _rows(out)
    assert len(rows) == 1 and rows[0]["label"] == ""
    assert rows[0]["error"].startswith("no face found" if case == "noface_photo" else "no image or video files")


def test_a_truncated_video_gets_a_reason_row(home):
    clip = _clip(home / "whole.mp4", frames=30)
    data = clip.read_bytes()
    (home / "vids").mkdir()
    (home / "vids" / "cut.mp4").write_bytes(data[: len(data) // 2])
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", "vids", "--data.predict.output", "v.csv"])
    errors = [r["error"] for r in _rows(home / "v.csv") if r["error"]]
    assert errors and any(("truncated" in e) or ("cannot be opened" in e) or ("no frame" in e) for e in errors), errors


def test_phone_photos_are_turned_upright_by_their_exif_orientation(home):
    upright = _astronaut()
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # stored sideways: turned 90 degrees to the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": undoes the turn above
    Image.fromarray(stored).save(home / "phone.jpg", exif=exif, quality=95)
    cv2.imwrite(str(home / "plain.jpg"), upright[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    phone, plain = lightning_fer.analyze([str(home / "phone.jpg"), str(home / "plain.jpg")])
    assert len(phone) == 1 and phone[0]["label"] == "happy"
    assert np.allclose(phone[0]["box"], plain[0]["box"], atol=4)  # pixels of the upright photo


def test_a_large_photo_is_shrunk_before_detection_and_its_boxes_mapped_back(home):
    from lightning_fer.data.io import MAX_PHOTO_SIDE, read_photo

    big = cv2.resize(_astronaut(), (4096, 4096), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(home / "big.jpg"), big[:, :, ::-1])
    img, scale = read_photo(home / "big.jpg")
    assert max(img.shape[:2]) == MAX_PHOTO_SIDE and scale == pytest.approx(0.5)
    small = lightning_fer.analyze(_astronaut())
    large = lightning_fer.analyze(str(home / "big.jpg"))
    assert len(large) == 1 and large[0]["label"] == "happy"
    assert np.allclose(np.array(large[0]["box"]) / 8, small[0]["box"], atol=6)  # the original's pixels


def test_a_changed_or_cut_cached_model_is_rebuilt_with_a_log_line(home, caplog):
    config, ckpt = zoo.materialize("fer2013")
    good = ckpt.read_bytes()
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    state["state_dict"][key] = state["state_dict"][key] * 0 + 3.0
    torch.save(state, ckpt)  # a changed checkpoint in the cache folder
    with caplog.at_level(logging.WARNING, logger="lightning_fer"):
        zoo.materialize("fer2013")
    assert ckpt.read_bytes() == good and "changed or cut" in caplog.text
    ckpt.write_bytes(good[:5000])  # a truncated one
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightning_fer"):
        zoo.materialize("fer2013")
    assert ckpt.read_bytes() == good and "broken" in caplog.text


def _clip(path: Path, frames: int = 12, fps: int = 10) -> Path:
    face = cv2.resize(_astronaut()[20:230, 120:330, ::-1], (150, 150), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (480, 270))
    step = min(4, 280 // frames)  # slow enough that looks 4 frames apart overlap (one track)
    for i in range(frames):
        img = np.full((270, 480, 3), 100, np.uint8)
        img[40:190, 40 + step * i:190 + step * i] = face
        writer.write(img)
    writer.release()
    return path


def test_annotated_videos_draw_each_track_on_every_frame(home):
    from lightning_fer.predict.writers import frame_boxes

    clip = _clip(home / "clip.mp4")
    out = home / "v.csv"
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", str(clip), "--data.predict.output", str(out),
          "--data.predict.video.fps", "2.5", "--data.predict.annotate_dir", str(home / "ann")])
    rows = [r for r in _rows(out) if r["box"]]
    looked = sorted({int(r["frame"]) for r in rows})
    assert looked == [0, 4, 8]  # 3 of the 12 frames were looked at
    for r in rows:
        r["box"] = [float(v) for v in r["box"].strip("[]").split(",")]
        r["frame"], r["track"] = int(r["frame"]), int(r["track"])
        r[f"p_{r['label']}"] = float(r[f"p_{r['label']}"])
    drawn = frame_boxes(rows)
    assert sorted(drawn) == list(range(12))  # every frame carries the track's box
    assert drawn[2][0][0][0] == pytest.approx((rows[0]["box"][0] + rows[1]["box"][0]) / 2, abs=0.1)
    cap = cv2.VideoCapture(str(home / "ann" / "clip_annotated.mp4"))
    src = cv2.VideoCapture(str(clip))
    changed = 0
    while True:
        ok, a = cap.read()
        ok2, b = src.read()
        if not (ok and ok2):
            break
        changed += int(np.abs(a.astype(int) - b.astype(int))[..., 1].max() > 80)  # the green box is there
    assert changed == 12


def test_progress_is_shown_while_faces_are_found(home, caplog, monkeypatch):
    from lightning_fer.predict import inputs as photos

    monkeypatch.setattr(photos, "PROGRESS_EVERY", 0.0)
    for i in range(3):
        cv2.imwrite(str(home / f"p{i}.jpg"), _astronaut()[:, :, ::-1])
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        photos.scan_photos(home, whole_image=True)
    assert "finding faces: 1/3 inputs" in caplog.text and "finding faces: 2/3 inputs" in caplog.text


@pytest.mark.parametrize(("args", "named"), [
    (["--data.predict.path", "missing.jpg"], "--data.predict.path missing.jpg: no such file or folder"),
    (["--data.predict.path", "in", "--data.predict.pth", "x"], "--data.predict.pth: unknown option (did you mean "
                                                              "--data.predict.path?)"),
    (["--data.predict.path", "in", "--data.predict.output", "rows.txt"], "--data.predict.output 'rows.txt': must end in "
                                                                         ".csv or .json"),
    ([], "predict --pretrained fer2013 needs --data.predict.path PATH"),
    (["--data.predict.path", "in", "--data.fold", "0"], "--data.fold: unknown option (0.4 moved it: data.folds.fold)"),
])
def test_user_errors_are_one_line_with_exit_code_2(home, args, named):
    (home / "in").mkdir()
    proc = _cli("predict", "--pretrained", "fer2013", *args, cwd=home)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and named in errors[0] and "Traceback" not in proc.stderr
    if "missing.jpg" in args or not args:  # the documented switch shows the traceback instead
        shown = _cli("predict", "--pretrained", "fer2013", *args, cwd=home, env={"LIGHTNING_FER_TRACEBACK": "1"})
        assert "Traceback" in shown.stderr


def test_a_flat_data_option_of_an_earlier_config_says_where_it_moved(home):
    (home / "old.yaml").write_text("data:\n  init_args:\n    batch_size: 8\n")  # a 0.3 config's flat data option
    proc = _cli("test", "--config", str(REPO / "configs/demo/resnet50.yaml"), "--config", "old.yaml", cwd=home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: batch_size (in a config): unknown option (0.4 moved it: data.loader.batch_size)")


def test_a_yaml_the_safe_loader_refuses_is_one_line(home):
    (home / "bad.yaml").write_text('model: !!python/object/apply:os.system ["echo hi"]\n')
    proc = _cli("predict", "--config", "bad.yaml", cwd=home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: bad.yaml: YAML refused by the safe loader")


def test_predict_help_shows_its_own_options_first(home):
    proc = _cli("predict", "--pretrained", "fer2013", "--help", cwd=home)
    head = "\n".join(proc.stdout.splitlines()[:25])
    assert proc.returncode == 0 and "--pretrained NAME" in head and "--data.predict.path PATH" in head
    own = _cli("predict", "--data.predict.help", cwd=home)
    assert own.returncode == 0 and "--data.predict.output FILE" in own.stdout and len(own.stdout.splitlines()) < 40


def test_predict_never_reads_the_training_source(home, fer2013_root, caplog):
    """The shipped config names FER2013's folder: where it exists, a one-photo predict must not scan it."""
    os.symlink(fer2013_root, home / "fer2013")
    cv2.imwrite(str(home / "one.jpg"), _astronaut()[:, :, ::-1])
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        main(["predict", "--pretrained", "fer2013", "--data.root", str(home / "fer2013"), "--data.predict.path",
              "one.jpg", "--data.predict.output", "one.csv"])
    assert "FolderSource" not in caplog.text and "32298" not in caplog.text
    assert _rows(home / "one.csv")[0]["label"] == "happy"


def test_metrics_skip_a_batch_whose_labels_are_all_unknown():
    """A cross-data-set test where the first batch holds only faces of a class the model does not
    know (CK+'s contempt, sorted together): a real Trainer, no crash, the known faces counted."""
    import lightning as L
    from torch.utils.data import DataLoader

    from lightning_fer.models.classifier import FERClassifier
    from lightning_fer.models.evaluation import UNKNOWN_CLASS, score

    model = FERClassifier("fer_vgg", num_classes=7, image_size=32, in_channels=1,
                          backbone_args={"widths": [8, 16], "convs_per_stage": 1})
    labels = [UNKNOWN_CLASS] * 4 + [0, 1, UNKNOWN_CLASS, 3]
    items = [{"image": torch.randn(1, 32, 32), "views": torch.randn(1, 1, 32, 32), "label": y, "index": i}
             for i, y in enumerate(labels)]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    (figures,) = trainer.test(model, dataloaders=DataLoader(items, batch_size=4))
    assert 0.0 <= figures["test/acc"] <= 1.0
    assert int(model.last_confusion["test"].sum()) == 3  # the three known faces, each once
    assert set(score(torch.randn(5, 7), torch.full((5,), UNKNOWN_CLASS), 7)) >= {"acc", "f1"}


# -- the one-call Python API -------------------------------------------------------------------------------------------
def test_analyze_equals_the_cli_on_the_astronaut(home):
    cv2.imwrite(str(home / "astronaut.jpg"), _astronaut()[:, :, ::-1])
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", "astronaut.jpg", "--data.predict.output", "a.csv",
          "--data.predict.runtime", "eager"])
    row = _rows(home / "a.csv")[0]
    for given in (str(home / "astronaut.jpg"), Image.open(home / "astronaut.jpg"),
                  cv2.imread(str(home / "astronaut.jpg"))[:, :, ::-1].copy()):
        (face,) = lightning_fer.analyze(given)
        assert face["label"] == row["label"] == "happy"
        for name, p in face["probabilities"].items():
            assert p == pytest.approx(float(row[f"p_{name}"]), abs=1e-3)
        assert face["box"] == pytest.approx([float(v) for v in row["box"].strip("[]").split(",")], abs=0.2)


def test_analyze_equals_the_cli_on_20_fer2013_crops(home, fer2013_root):
    crops = sorted((fer2013_root / "val").rglob("*.jpg"))[::150][:20]
    folder = home / "crops"
    folder.mkdir()
    for c in crops:
        shutil.copy(c, folder / c.name)
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", "crops", "--data.predict.output", "c.csv",
          "--data.face_box", "image", "--data.predict.runtime", "eager"])
    rows = {Path(r["file"]).name: r for r in _rows(home / "c.csv")}
    files = [str(folder / c.name) for c in crops]
    faces = lightning_fer.analyze(files, face_box="image")
    assert len(faces) == 20 and all(len(f) == 1 for f in faces)
    for file, (face,) in zip(files, faces):
        row = rows[Path(file).name]
        assert face["label"] == row["label"]
        assert max(abs(p - float(row[f"p_{n}"])) for n, p in face["probabilities"].items()) < 1e-3


def test_analyze_works_for_an_ensemble_and_a_video_and_names_bad_inputs(home):
    if "fer2013-ensemble" not in zoo.names():
        pytest.skip("no shipped ensemble")
    (face,) = lightning_fer.analyze(_astronaut(), model="fer2013-ensemble")
    assert face["label"] == "happy" and abs(sum(face["probabilities"].values()) - 1) < 1e-3
    clip = _clip(home / "clip.mp4", frames=4)
    frames = list(lightning_fer.analyze(str(clip), video={"fps": 5}))
    assert [f["frame"] for f in frames] == [0, 2]
    assert all(len(f["faces"]) == 1 and f["faces"][0]["track"] == 0 for f in frames)
    (home / "empty.jpg").write_bytes(b"")
    with pytest.raises(lightning_fer.predict.api.ImageReadError, match=r"empty.jpg: empty file"):
        lightning_fer.analyze(str(home / "empty.jpg"))
    out = lightning_fer.analyze([str(home / "empty.jpg"), _astronaut()], on_error="skip")
    assert out[0] == [] and out[1][0]["label"] == "happy"


def test_a_run_says_its_face_box_and_warns_when_whole_large_pictures_are_faces(tmp_path, caplog):
    from lightning_fer import FERDataModule

    for label in ("happy", "sad"):
        (tmp_path / "d" / "train" / label).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / "d" / "train" / label / f"{i}.jpg"), _astronaut()[:, :, ::-1])
    # uncropped photos, much larger than the model's input, no annotated box: faces are detected
    dm = FERDataModule("folder", str(tmp_path / "d"), image_size=48, landmarks="template", folds={"fold": None},
                       records={"cache_dir": str(tmp_path / "c")}, loader={"num_workers": 0})
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        dm.prepare_data()
        dm.setup("fit")
    assert "the pictures are 512 px (median of 4), over 3x the model's input" in caplog.text
    assert dm.index_report.kinds == {"mtcnn": 4}
    assert "face box: the detected box (face_box auto, landmarks mtcnn)" in caplog.text
    box = dm.datasets["train"][0]
    assert box["views"].shape[-1] == 48
    # face_box: image says to take whole pictures: it is kept, with a warning
    caplog.clear()
    dm = FERDataModule("folder", str(tmp_path / "d"), image_size=48, landmarks="template", face_box="image",
                       folds={"fold": None}, records={"cache_dir": str(tmp_path / "c2")}, loader={"num_workers": 0})
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        dm.prepare_data()
        dm.setup("fit")
    assert dm.index_report.kinds == {"template": 4}
    assert "face box: the whole picture (face_box image, landmarks template)" in caplog.text
    assert "512 px wide (median), over 3x the model's 48 px input" in caplog.text


def test_a_changed_cached_onnx_export_is_exported_again(home, caplog):
    pytest.importorskip("onnxruntime", reason="the ONNX runtime needs the onnx extra")
    cv2.imwrite(str(home / "astronaut.jpg"), _astronaut()[:, :, ::-1])
    args = ["predict", "--pretrained", "fer2013", "--data.predict.path", "astronaut.jpg", "--data.predict.runtime", "onnx"]
    main([*args, "--data.predict.output", "a.csv"])
    (onnx,) = (home / "home").rglob("*.onnx")
    onnx.write_bytes(onnx.read_bytes()[:2000])  # a cut file in the cache
    with caplog.at_level(logging.WARNING, logger="lightning_fer"):
        main([*args, "--data.predict.output", "b.csv"])
    assert "was changed or cut" in caplog.text
    assert _rows(home / "a.csv")[0]["p_happy"] == _rows(home / "b.csv")[0]["p_happy"]
