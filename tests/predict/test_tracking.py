"""Videos without searching every frame (issue 36): faces searched every k-th frame and carried by
optical flow between searches still get a box and a label on every frame, and match searching every
frame on a clip with one moving face and one face entering."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata
from torchvision.ops import box_iou

import lightning_fer
from lightning_fer.predict.video import FrameReader, VideoOptions

FPS, FRAMES, ENTERS = 10, 40, 12  # the second face slides in from the right from frame 12


def write_clip(path: Path) -> Path:
    """640x360 on a textured background: the astronaut's face (120 px) moving right along the top,
    and its mirror sliding in from the right edge along the bottom from frame ``ENTERS``."""
    face = cv2.resize(skdata.astronaut()[20:230, 120:330, ::-1], (120, 120), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(60, 160, (360, 640, 3), dtype=np.uint8), (9, 9), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 360))
    for i in range(FRAMES):
        img = background.copy()
        x = 20 + 6 * i
        img[20:140, x:x + 120] = face
        if i >= ENTERS:
            left = 640 - 10 * (i - ENTERS + 1)  # 10 px more of it each frame
            visible = min(120, 640 - left)
            img[210:330, left:left + visible] = face[:, ::-1][:, :visible]
        writer.write(img)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "entering.mp4")


@pytest.fixture(scope="module")
def every_frame(clip):
    return list(lightning_fer.Predictor("fer2013", video={"search_every": 1}).analyze(clip))


def _match(a: list[dict], b: list[dict], min_iou: float = 0.5) -> list[tuple[dict, dict]]:
    """Faces of ``a`` with the face of ``b`` their box overlaps most (at least ``min_iou``)."""
    if not a or not b:
        return []
    iou = box_iou(*(torch.as_tensor(np.asarray([f["box"] for f in x], np.float64)) for x in (a, b)))
    best = iou.max(1)
    return [(a[i], b[int(j)]) for i, (v, j) in enumerate(zip(best.values, best.indices)) if float(v) >= min_iou]


@pytest.mark.parametrize("k", [3, 5])
def test_searching_every_kth_frame_labels_every_frame_and_matches_every_frame_search(clip, every_frame, k):
    tracked = list(lightning_fer.Predictor("fer2013", video={"search_every": k}).analyze(clip))
    assert [f["frame"] for f in tracked] == list(range(FRAMES))  # a row for every frame
    searched = sum(any(face["searched"] for face in f["faces"]) for f in tracked)
    assert searched < FRAMES / 2, f"searched {searched} of {FRAMES} frames with search_every={k}"
    assert all(f["faces"] for f in tracked)  # the moving face is never lost
    faces_all = sum(len(f["faces"]) for f in every_frame)
    pairs = [p for a, b in zip(every_frame, tracked) for p in _match(a["faces"], b["faces"])]
    assert len(pairs) >= 0.9 * faces_all, (len(pairs), faces_all)
    agree = np.mean([a["label"] == b["label"] for a, b in pairs])
    assert agree >= 0.9, agree
    assert all(a["track"] is not None and b["track"] is not None for a, b in pairs)

    def first_two(frames):
        return next(f["frame"] for f in frames if len(f["faces"]) >= 2)

    # The entering face: found at a search at most k - 1 frames after every-frame search finds it.
    assert ENTERS <= first_two(every_frame) <= first_two(tracked) <= first_two(every_frame) + k - 1
    # Two tracks in all: the moving face keeps its id between searches.
    assert len({face["track"] for f in tracked for face in f["faces"]}) == 2


def test_a_lost_face_is_searched_again_at_once(tmp_path):
    """A face that vanishes between searches: optical flow loses it, the frame is searched, and the
    row says no face was found there (not a face carried onto the background)."""
    face = cv2.resize(skdata.astronaut()[20:230, 120:330, ::-1], (120, 120), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(tmp_path / "gone.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 360))
    for i in range(8):
        img = np.full((360, 640, 3), (90, 110, 130), np.uint8)
        if i < 4:
            img[40:160, 100 + 4 * i:220 + 4 * i] = face
        writer.write(img)
    writer.release()
    frames = list(lightning_fer.Predictor("fer2013", video={"search_every": 10}).analyze(tmp_path / "gone.mp4"))
    assert [len(f["faces"]) for f in frames] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert [f["faces"][0]["searched"] for f in frames[:4]] == [True, False, False, False]


def test_shrunk_search_finds_the_same_faces(clip, every_frame):
    small = list(lightning_fer.Predictor("fer2013", video={"detect_side": 320}).analyze(clip))
    pairs = [p for a, b in zip(every_frame, small) for p in _match(a["faces"], b["faces"])]
    assert len(pairs) >= 0.9 * sum(len(f["faces"]) for f in every_frame)


def test_frames_are_decoded_in_a_thread_in_order_and_at_the_chosen_rate(clip):
    cap = cv2.VideoCapture(str(clip))
    reader = FrameReader(cap, every=2.5)
    got = [i for i, frame in reader]
    reader.close()
    cap.release()
    assert got == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38] and reader.read == FRAMES


def test_bad_search_options_are_named():
    with pytest.raises(ValueError, match="--data.predict.video.search_every 0: must be at least 1"):
        VideoOptions(search_every=0)
    with pytest.raises(ValueError, match="--data.predict.video.detect_side 10: must be at least 48"):
        VideoOptions(detect_side=10)
