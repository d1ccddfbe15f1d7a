"""Landmarks from MTCNN on real faces, the template fallback, and the index cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from lightning_fer.data.detection import TEMPLATE_5, FaceDetector, LandmarkSettings
from lightning_fer.data.landmarks import IndexTable, LandmarkIndex
from lightning_fer.data.regions import region_boxes
from lightning_fer.data.sources import FolderSource, Record


def test_mtcnn_on_the_astronaut():
    img = skdata.astronaut()  # Eileen Collins, 512x512, one face
    (found,) = FaceDetector(LandmarkSettings(), device="cpu").detect([img])
    pts, box, prob = found
    assert prob > 0.99
    x0, y0, x1, y1 = box
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 200
    assert (pts[:, 0] > x0).all() and (pts[:, 0] < x1).all() and (pts[:, 1] > y0).all() and (pts[:, 1] < y1).all()
    le, re, nose, ml, mr = pts
    assert le[0] < nose[0] < re[0] and ml[0] < mr[0]  # image-left first
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])
    boxes = region_boxes(pts, 512, 512, box)
    for part, idx in (("left_eye", [0]), ("right_eye", [1]), ("nose", [2]), ("mouth", [3, 4])):
        b = boxes[part]
        assert all(b[0] <= pts[i, 0] <= b[2] and b[1] <= pts[i, 1] <= b[3] for i in idx)


def _fer_records(root: Path, per_class: int = 8) -> list[Record]:
    records, _, _ = FolderSource(root).load()
    by_class: dict[int, list[Record]] = {}
    for r in records:
        if r.split == "train" and len(by_class.setdefault(r.label, [])) < per_class:
            by_class[r.label].append(r)
    return [r for rs in by_class.values() for r in rs]


def test_mtcnn_on_fer2013_with_template_fallback(fer2013_root, tmp_path):
    records = _fer_records(fer2013_root)
    index = LandmarkIndex(tmp_path / "index.json", LandmarkSettings(mode="auto", no_face="template"))
    entries, report = index.build(records, device="cpu")
    assert report.total == len(records) == 56 and report.bad == 0
    assert report.kinds["mtcnn"] + report.kinds["template_fallback"] == 56
    assert report.kinds["mtcnn"] >= 0.6 * 56  # about 85% measured on 2,000 images
    for r in records:
        e = entries[r.key]
        assert e.points.shape == (5, 2) and (e.width, e.height) == (48, 48)
        if e.kind == "mtcnn":
            assert e.points[0, 0] < e.points[1, 0]
        else:
            np.testing.assert_allclose(e.points, TEMPLATE_5 * 48)


def _images(folder: Path, n: int, size: int = 96) -> list[Record]:
    from lightning_fer.data.synthetic import _subject, draw_face

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        img, _, _ = draw_face(_subject(rng), "neutral", rng, size)
        p = folder / f"{i:03d}.png"
        cv2.imwrite(str(p), img[:, :, ::-1])
        out.append(Record(path=str(p), key=p.name, label=0))
    return out


def test_cache_hit_change_and_setting_invalidation(tmp_path):
    records = _images(tmp_path / "img", 6)
    settings = LandmarkSettings(mode="template")
    index = LandmarkIndex(tmp_path / "cache" / "index.json", settings)
    _, r1 = index.build(records)
    assert (r1.computed, r1.from_cache) == (6, 0)
    assert index.cache_file.is_file() and not index.journal_file.exists()
    _, r2 = LandmarkIndex(index.cache_file, settings).build(records)
    assert (r2.computed, r2.from_cache) == (0, 6)
    # A changed image is redone, the others are not.
    img = cv2.imread(records[2].path)
    cv2.imwrite(records[2].path, cv2.resize(img, (64, 64)))
    entries, r3 = LandmarkIndex(index.cache_file, settings).build(records)
    assert (r3.computed, r3.from_cache) == (1, 5)
    assert entries[records[2].key].width == 64
    # A few changed images stay in the journal (the index is not rewritten for them), and are read from it.
    assert index.journal_file.is_file()
    entries, r3b = LandmarkIndex(index.cache_file, settings).build(records)
    assert (r3b.computed, r3b.from_cache) == (0, 6) and entries[records[2].key].width == 64
    # A changed setting redoes everything.
    _, r4 = LandmarkIndex(index.cache_file, LandmarkSettings(mode="template", min_face_size=30)).build(records)
    assert (r4.computed, r4.from_cache) == (6, 0)


def test_annotation_mode_requires_annotations(tmp_path):
    records = _images(tmp_path / "img", 2)
    with pytest.raises(ValueError, match="2 record\\(s\\) have no landmarks"):
        LandmarkIndex(tmp_path / "i.json", LandmarkSettings(mode="annotation")).build(records)


def test_no_face_policies(tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((80, 80, 3), 128, np.uint8))
    rec = [Record(path=str(blank), key="blank.png", label=0, where="row 7")]
    entries, rep = LandmarkIndex(tmp_path / "a.json", LandmarkSettings(no_face="skip")).build(rec, device="cpu")
    assert not entries["blank.png"].ok and entries["blank.png"].kind == "no_face" and rep.bad == 1
    entries, _ = LandmarkIndex(tmp_path / "b.json", LandmarkSettings(no_face="template")).build(rec, device="cpu")
    assert entries["blank.png"].kind == "template_fallback"
    with pytest.raises(ValueError, match="row 7: MTCNN found no face"):
        LandmarkIndex(tmp_path / "c.json", LandmarkSettings(no_face="error")).build(rec, device="cpu")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lightning_fer.data.detection import LandmarkSettings
    from lightning_fer.data.landmarks import LandmarkIndex
    from lightning_fer.data.sources import Record
    files = sorted(Path(sys.argv[1]).glob("*.png"))
    records = [Record(path=str(p), key=p.name, label=0) for p in files]
    index = LandmarkIndex(sys.argv[2], LandmarkSettings(mode="mtcnn"))
    def slow(done):
        print("chunk", done, flush=True)
        time.sleep(0.3)  # widen the window so the kill lands mid-run
    index.build(records, chunk_size=4, batch_size=4, device="cpu", on_chunk=slow)
    print("finished", flush=True)
    """
)


def test_killed_writer_resumes_without_redoing_work(tmp_path):
    records = _images(tmp_path / "img", 40)
    cache = tmp_path / "cache" / "index.col"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "img"), str(cache)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    done = 0
    deadline = time.time() + 600  # a watchdog against a hung child, not a speed check
    for line in proc.stdout:  # wait until at least 3 chunks (12 images) are in the journal
        if line.startswith("chunk"):
            done = int(line.split()[1])
            if done >= 12:
                break
        assert time.time() < deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    journal = cache.with_name(cache.name + ".journal")
    assert not cache.exists(), "the finished cache must not exist after a kill"
    assert journal.is_file()
    # Tear the journal's last line as a kill during a write would.
    with open(journal, "ab") as f:
        f.write(b'{"k": "torn')
    index = LandmarkIndex(cache, LandmarkSettings(mode="mtcnn"))
    entries, report = index.build(records, device="cpu")
    assert report.from_cache >= done and report.from_cache + report.computed == 40
    assert report.computed <= 40 - done
    assert len(entries) == 40 and all(entries.ok)
    _, saved = IndexTable.load(cache)  # a valid, complete index
    assert len(saved) == 40 and saved.ok.all() and not journal.exists()
    assert not list(cache.parent.glob("*.tmp*"))
    # And a further run is all cache hits.
    _, again = LandmarkIndex(cache, LandmarkSettings(mode="mtcnn")).build(records, device="cpu")
    assert (again.computed, again.from_cache) == (0, 40)
