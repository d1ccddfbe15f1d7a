"""Prediction on videos: a short video written here (two faces moving across a background, some
frames without a face), faces followed as tracks, timestamps, timelines, an annotated copy, and
broken videos reported rather than crashed on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO
from skimage import data as skdata

from lightning_fer.cli import main
from lightning_fer.predict.tracking import IoUTracker

MEMBER = REPO / "tests" / "assets" / "checkpoints_v0" / "member.ckpt"
FPS, FRAMES, EMPTY = 10, 14, (6, 7)  # frames 6 and 7 show no face


def write_video(path: Path, frames: int = FRAMES, fps: int = FPS, empty=EMPTY) -> Path:
    """640x360: the astronaut's face (120 px) moving right along the top, its mirror moving left
    along the bottom; the frames in ``empty`` are background only."""
    face = cv2.resize(skdata.astronaut()[20:230, 120:330, ::-1], (120, 120), interpolation=cv2.INTER_AREA)
    background = np.full((360, 640, 3), (90, 110, 130), np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for i in range(frames):
        img = background.copy()
        if i not in empty:
            x = 20 + 8 * i
            img[10:130, x:x + 120] = face
            img[220:340, 500 - 8 * i:620 - 8 * i] = face[:, ::-1]
        writer.write(img)
    writer.release()
    return path


def test_the_tracker_keeps_ids_and_starts_new_ones_after_a_gap():
    t = IoUTracker(min_iou=0.3, max_gap=2)
    assert t.update(0, [(0, 0, 10, 10), (100, 0, 110, 10)]) == [0, 1]
    assert t.update(1, [(101, 0, 111, 10), (1, 0, 11, 10)]) == [1, 0]  # order of detections does not matter
    assert t.update(3, [(2, 0, 12, 10)]) == [0]  # a gap of 2 looks: the same track
    assert t.update(7, [(3, 0, 13, 10)]) == [2]  # a longer gap: a new one
    assert t.update(8, [(60, 60, 70, 70)]) == [3]  # no overlap with any live track


@pytest.fixture
def video_dir(tmp_path):
    d = tmp_path / "media"
    d.mkdir()
    write_video(d / "two_faces.mp4")
    good = write_video(tmp_path / "whole.mp4")
    raw = good.read_bytes()
    (d / "truncated.mp4").write_bytes(raw[: len(raw) // 2])  # the file cut short, as by a failed copy
    (d / "empty.avi").write_bytes(b"")
    return d


def test_predict_on_a_video_folder_through_the_cli(video_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "video.csv"
    main(["predict", "--config", str(REPO / "configs/demo/resnet50.yaml"), "--model.init_args.backbone=squeezenet1_1",
          "--data.init_args.image_size=64", "--data.init_args.loader.num_workers=0", "--trainer.logger=false",
          "--trainer.enable_progress_bar=false", f"--ckpt_path={MEMBER}", f"--data.predict.path={video_dir}",
          f"--data.predict.output={out}", f"--data.predict.annotate_dir={tmp_path / 'annotated'}",
          "--data.init_args.predict.video.smooth=3"])
    rows = list(csv.DictReader(open(out)))
    video = [r for r in rows if r["file"].endswith("two_faces.mp4")]
    faces = [r for r in video if r["label"]]
    # Two faces on each of the 12 frames that show them, each followed by one track all along.
    assert len(faces) == 2 * (FRAMES - len(EMPTY))
    tracks: dict[str, set] = {}
    for r in faces:
        top = json.loads(r["box"])[1] < 180
        tracks.setdefault(r["track"], set()).add(top)
        assert float(r["time"]) == pytest.approx(int(r["frame"]) / FPS, abs=1e-3)
        probs = [float(r[k]) for k in r if k.startswith("p_")]
        assert sum(probs) == pytest.approx(1, abs=1e-3)
    assert len(tracks) == 2 and all(len(v) == 1 for v in tracks.values())  # one face per track, never swapped
    assert sorted({int(r["frame"]) for r in faces}) == [i for i in range(FRAMES) if i not in EMPTY]
    missing = [r for r in video if r["error"].startswith("no face found")]
    assert sorted(int(r["frame"]) for r in missing) == list(EMPTY)
    assert {float(r["time"]) for r in missing} == {e / FPS for e in EMPTY}
    # Broken files are rows with a reason, not a crash.
    errors = {Path(r["file"]).name: r["error"] for r in rows if r["error"] and not r.get("frame")}
    assert errors["empty.avi"].startswith(("cannot be opened", "no frame"))
    assert errors["truncated.mp4"].startswith(("truncated", "cannot be opened", "no frame"))
    # A timeline per track, not blank.
    pngs = sorted((tmp_path / "video_timelines").glob("two_faces_track*.png"))
    assert len(pngs) == 2
    img = cv2.imread(str(pngs[0]))
    assert img is not None and img.std() > 10
    # The annotated copy has every frame.
    cap = cv2.VideoCapture(str(tmp_path / "annotated" / "two_faces_annotated.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == FRAMES


def test_a_video_without_a_stated_frame_rate_is_refused_by_name(tmp_path):
    from lightning_fer.predict.video import VideoOptions, frame_rate

    class NoRate:
        def get(self, prop):
            return 0.0

    with pytest.raises(ValueError, match=r"nofps.mp4: the container states no frame rate; set data.predict.video.assume_fps"):
        frame_rate(NoRate(), tmp_path / "nofps.mp4", VideoOptions())
    assert frame_rate(NoRate(), tmp_path / "nofps.mp4", VideoOptions(assume_fps=12.5)) == 12.5


def test_a_chosen_rate_looks_at_fewer_frames(tmp_path):
    from lightning_fer.data.detection import FaceDetector, LandmarkSettings
    from lightning_fer.predict.inputs import PhotoScan, video_face
    from lightning_fer.predict.video import VideoOptions, scan_video

    path = write_video(tmp_path / "v.mp4", frames=10, empty=())
    scan = PhotoScan()
    scan_video(path, FaceDetector(LandmarkSettings()), VideoOptions(fps=5), 0.9,
               lambda *a: video_face(*a, file=str(path)), scan)
    frames = sorted({f.frame for f in scan.faces})
    assert frames == [0, 2, 4, 6, 8]  # 10 fps looked at 5 times a second
    assert {f.track for f in scan.faces} == {0, 1} and not scan.problems
    assert all(f.crop is not None and f.crop.shape[0] < 360 for f in scan.faces)  # only the pixels around each face


def test_a_bad_smoothing_window_is_named():
    from lightning_fer.predict.writers import FacePredictionWriter

    with pytest.raises(ValueError, match="--data.predict.video.smooth 0: the smoothing window must be at least 1 frame"):
        FacePredictionWriter("runs/v.csv", smooth=0)
