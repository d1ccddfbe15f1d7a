"""Records and the landmark index as columns: the column file, the record cache, a 0.2 index
migrated, a kill during an index update, trusting the cache, and forked workers that do not copy."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lightning_fer.data import FERDataModule
from lightning_fer.data.columns import ColumnFileError, StringColumn, read_columns, write_columns
from lightning_fer.data.dataset import BadImagesError, FERDataset
from lightning_fer.data.detection import LandmarkSettings
from lightning_fer.data.geometry import FacePoints
from lightning_fer.data.journal import JournaledCache
from lightning_fer.data.landmarks import KINDS, IndexTable, LandmarkIndex
from lightning_fer.data.records import RecordTable, load_records
from lightning_fer.data.sources import AffectNetSource, Record
from lightning_fer.data.synthetic import affectnet_layout
from lightning_fer.data.transforms import FaceTransform

SIX = ["face", "left_eye", "right_eye", "nose", "mouth", "rest"]


def test_column_file_round_trip_and_a_cut_file(tmp_path):
    arrays = {"a": np.arange(10, dtype=np.int16), "b": np.ones((3, 68, 2), np.float32), "empty": np.zeros((0, 4)),
              **StringColumn.of(["x.jpg", "dir/é.png", ""]).arrays("s")}
    path = write_columns(tmp_path / "t.col", arrays, {"hello": [1, 2]})
    header, back = read_columns(path)
    assert header == {"hello": [1, 2]}
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
        assert not back[k].flags.writeable or back[k].size == 0
    assert list(StringColumn.from_arrays(back, "s")) == ["x.jpg", "dir/é.png", ""]
    raw = path.read_bytes()
    (tmp_path / "cut.col").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ColumnFileError, match=r"cut\.col: cut short in column"):
        read_columns(tmp_path / "cut.col")
    (tmp_path / "other.col").write_bytes(b"not a column file at all")
    with pytest.raises(ColumnFileError, match="other.col: not a lightning_fer column file"):
        read_columns(tmp_path / "other.col")


def test_the_column_file_is_safetensors_and_refuses_what_it_cannot_hold(tmp_path):
    from safetensors.numpy import load_file

    arrays = {"i": np.arange(5, dtype=np.int64), "f": np.ones((2, 3), np.float32), "u": np.arange(3, dtype=np.uint8),
              "b": np.array([True, False])}
    path = write_columns(tmp_path / "t.col", arrays, {"n": 5})
    theirs = load_file(str(path))  # the safetensors library reads it as it is
    for k, v in arrays.items():
        np.testing.assert_array_equal(theirs[k], v)
    _, mine = read_columns(path)
    assert all(mine[k].ctypes.data % mine[k].dtype.itemsize == 0 for k in mine)  # aligned maps
    with pytest.raises(TypeError, match="column 'names' holds <U3"):
        write_columns(tmp_path / "bad.col", {"names": np.array(["abc"])})
    # A file of the 0.3 format (its own magic) is not taken for one: the caches that read it rebuild.
    (tmp_path / "old.col").write_bytes(b"LFERCOL1" + (10).to_bytes(8, "little") + b'{"a": 1}  ')
    with pytest.raises(ColumnFileError, match="old.col: not a lightning_fer column file"):
        read_columns(tmp_path / "old.col")


def test_record_table_reads_back_every_field():
    pts68 = np.random.default_rng(0).uniform(0, 90, (68, 2)).astype(np.float32)
    records = [Record("/d/a/1.jpg", "a/1.jpg", 3, subject="s1", split="train", box=(1, 2, 30, 40), landmarks=pts68,
                      where="t.csv:2"),
               Record("/d/b.jpg", "b.jpg", 0, split=None, where="t.csv:3"),
               Record("/d/c.jpg", "c.jpg", 6, subject="s2", split="test", landmarks=pts68[:5].copy())]
    table = RecordTable.of(records)
    assert table.prefix == "/d/" and len(table) == 3
    for r, back in zip(records, table):
        assert (back.path, back.key, back.label, back.subject, back.split, back.box, back.where) == \
               (r.path, r.key, r.label, r.subject, r.split, r.box, r.where)
        if r.landmarks is None:
            assert back.landmarks is None
        else:
            np.testing.assert_array_equal(back.landmarks, r.landmarks)
    # Paths that are not prefix + key are kept as they are.
    odd = RecordTable.of([Record("/x/1.jpg", "one", 0), Record("/y/2.jpg", "two", 1)])
    assert [odd.path(0), odd.path(1)] == ["/x/1.jpg", "/y/2.jpg"]
    with pytest.raises(ValueError, match="unknown split"):
        RecordTable.of([Record("/x/1.jpg", "one", 0, split="holdout")])


class CountingAffectNet(AffectNetSource):
    reads = 0

    def load(self):
        CountingAffectNet.reads += 1
        return super().load()


def test_record_cache_skips_the_csv_until_it_changes(tmp_path, caplog):
    affectnet_layout(tmp_path / "an", 60, image_size=48, faces=7)
    src = CountingAffectNet(tmp_path / "an")
    t1, names, rep = load_records(src, tmp_path / "cache", "records.col")
    t2, names2, rep2 = load_records(CountingAffectNet(tmp_path / "an"), tmp_path / "cache", "records.col")
    assert CountingAffectNet.reads == 1 and names == names2 and rep2.kept == rep.kept == 60
    assert [r.key for r in t1] == [r.key for r in t2]
    np.testing.assert_array_equal(t1.landmarks, t2.landmarks)
    csv_file = tmp_path / "an" / "Manually_Annotated_file_lists" / "training.csv"
    lines = csv_file.read_text().splitlines()
    csv_file.write_text("\n".join(lines[:-1]) + "\n")  # one row fewer
    with caplog.at_level(logging.INFO):
        t3, _, _ = load_records(CountingAffectNet(tmp_path / "an"), tmp_path / "cache", "records.col")
    assert CountingAffectNet.reads == 2 and len(t3) == 59
    assert "the source's files or options changed" in caplog.text
    # Another class set is another table.
    load_records(CountingAffectNet(tmp_path / "an", class_set=8), tmp_path / "cache", "records.col")
    assert CountingAffectNet.reads == 3


def _old_index(dm: FERDataModule) -> Path:
    """The index this data module built, written as lightning_fer 0.2 wrote it (a JSON file of
    entries under the same header, by the same journaled writer), and the column file removed."""
    records, index = dm.prepared.index()
    li = LandmarkIndex(next(dm.cache_dir.glob("index-*.col")), dm.landmark_settings)
    entries = [index[i].to_json(records.keys[i], (int(index.size[i]), int(index.mtime[i]))) for i in range(len(index))]
    entries = [{k: v for k, v in e.items() if k != "md5"} for e in entries]  # 0.2 kept no digests
    JournaledCache(li.legacy_file, li.header).finish(entries)
    li.cache_file.unlink()
    return li.legacy_file


@pytest.mark.parametrize("same_settings", [True, False])
def test_a_0_2_json_index_is_migrated_or_rebuilt_with_a_log_line(tmp_path, caplog, same_settings):
    affectnet_layout(tmp_path / "an", 40, image_size=48, faces=7)
    dm = FERDataModule("affectnet", root=str(tmp_path / "an"), views=SIX, image_size=32, loader={"num_workers": 0})
    dm.prepare_data()
    dm.setup("fit")
    before = {k: dm.datasets[k].view_mask.copy() for k in ("train", "val", "test")}
    legacy = _old_index(dm)
    settings = {} if same_settings else {"landmarks": {"mode": "auto", "min_face_size": 30}}
    with caplog.at_level(logging.INFO):
        dm2 = FERDataModule("affectnet", root=str(tmp_path / "an"), views=SIX, image_size=32,
                            loader={"num_workers": 0}, **settings)
        dm2.prepare_data()
        dm2.setup("fit")
    if same_settings:
        assert "migrating the JSON landmark index" in caplog.text and "(lightning_fer 0.2)" in caplog.text
        assert (dm2.index_report.from_cache, dm2.index_report.computed) == (40, 0)
        for k, mask in before.items():
            np.testing.assert_array_equal(dm2.datasets[k].view_mask, mask)
    else:
        assert "cannot be used (other settings or unreadable); rebuilding" in caplog.text
        assert (dm2.index_report.from_cache, dm2.index_report.computed) == (0, 40)
    # The JSON stays for a 0.2 install sharing the folder; this version reads the column file from now on.
    assert legacy.exists() and next(dm2.cache_dir.glob("index-*.col")).is_file()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        FERDataModule("affectnet", root=str(tmp_path / "an"), views=SIX, image_size=32, loader={"num_workers": 0},
                      **settings).prepare_data()
    assert "JSON landmark index" not in caplog.text


KILL_IN_REWRITE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import lightning_fer.files as files
    from lightning_fer.data import landmarks
    from lightning_fer.data.detection import LandmarkSettings
    from lightning_fer.data.records import RecordTable
    from lightning_fer.data.sources import Record

    landmarks.JOURNAL_ROWS, landmarks.JOURNAL_SHARE = 0, 0.0  # every update rewrites the index
    real = os.replace
    def killed(src, dst):  # the temporary is written whole; the process dies before the rename
        if str(dst).endswith(".col"):
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
    files.os.replace = killed
    folder = Path(sys.argv[1])
    records = [Record(str(p), p.name, 0) for p in sorted(folder.glob("*.jpg"))]
    landmarks.LandmarkIndex(sys.argv[2], LandmarkSettings(mode="template")).build(records)
    """
)


def test_a_kill_during_an_index_update_leaves_a_readable_index(tmp_path):
    import cv2

    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(30):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), np.full((40 + i, 50, 3), 10 * i % 255, np.uint8))
    records = [Record(str(p), p.name, 0) for p in sorted(folder.glob("*.jpg"))]
    cache = tmp_path / "cache" / "index.col"
    settings = LandmarkSettings(mode="template")
    LandmarkIndex(cache, settings).build(records)
    before = cache.read_bytes()
    for i in (3, 7):  # two changed images: an update
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), np.zeros((64, 64, 3), np.uint8))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-c", KILL_IN_REWRITE, str(folder), str(cache)], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert cache.read_bytes() == before, "the old index must stand until the new one is renamed onto it"
    assert list(cache.parent.glob(".index.tmp*")), "the killed writer's temporary is left (and cleaned next run)"
    _, old = IndexTable.load(cache)  # readable
    assert len(old) == 30 and old.ok.all()
    index, report = LandmarkIndex(cache, settings).build(records)
    assert (report.computed, report.from_cache) == (0, 30)  # the journal kept the two updates
    assert index["03.jpg"].width == 64 and index["04.jpg"].height == 44
    assert not list(cache.parent.glob(".index.tmp*"))


def test_trusting_the_cache_skips_the_check_of_every_file(tmp_path):
    affectnet_layout(tmp_path / "an", 40, image_size=48, faces=7)
    root = tmp_path / "an"
    FERDataModule("affectnet", root=str(root), image_size=32, loader={"num_workers": 0}).prepare_data()
    victim = next((root / "Manually_Annotated_Images").rglob("*.jpg"))
    victim.unlink()
    trusted = FERDataModule("affectnet", root=str(root), image_size=32, landmarks={"trust_cache": True},
                            loader={"num_workers": 0})
    trusted.setup("fit")  # reads the index as prepare_data left it: no stat of each file
    assert trusted.index_report.bad == 0 and sum(len(v) for v in trusted.splits.values()) == 40
    checked = FERDataModule("affectnet", root=str(root), image_size=32, loader={"num_workers": 0})
    with pytest.raises(BadImagesError, match="1 image\\(s\\) cannot be used"):
        checked.setup("fit")


def _big_dataset(tmp_path: Path, n: int) -> FERDataset:
    """A dataset over ``n`` records read from column files (no images: only what workers index)."""
    rng = np.random.default_rng(0)
    keys = [f"{i // 1000}/{i:08d}.jpg" for i in range(n)]
    pts = rng.uniform(10, 80, (n, 68, 2)).astype(np.float32)
    table = RecordTable(StringColumn.of(keys), None, "/data/", rng.integers(0, 7, n), np.ones(n, np.int8),
                        np.full(n, -1, np.int32), StringColumn.of([]), np.full((n, 4), np.nan, np.float32), pts,
                        np.full(n, 68, np.int16), StringColumn.of([""] * n))
    write_columns(tmp_path / "records.col", table.arrays(), {})
    table = RecordTable.from_arrays(read_columns(tmp_path / "records.col")[1], "/data/")
    index = IndexTable.empty(n)
    index.cols["ok"][:] = True
    index.cols["kind"][:] = KINDS.index("annotation")
    index.save(tmp_path / "index.col", {})
    _, index = IndexTable.load(tmp_path / "index.col")
    ids = np.arange(n)
    return FERDataset.of_records(table, ids, FacePoints(table, index), np.zeros((n, 4), np.float32),
                                 np.ones((n, 6), bool), FaceTransform(SIX, 32, None))


def _private_dirty() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty"):
                return int(line.split()[1]) * 1024
    return 0


def _growth_in_a_fork(ds) -> int:
    """Private memory a forked process (a loader worker) gains reading every item's metadata."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            p0 = _private_dirty()
            for i in range(len(ds)):
                _ = ds.paths[i], ds.points[i], ds.boxes[i], ds.view_mask[i], int(ds.labels[i])
            os.write(w, str(_private_dirty() - p0).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 100)
    os.waitpid(pid, 0)
    return int(out)


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").is_file(), reason="needs Linux's /proc/<pid>/smaps_rollup")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (loader workers on Linux)")
def test_forked_workers_do_not_copy_the_records(tmp_path):
    n = 100_000
    ds = _big_dataset(tmp_path, n)
    grown = _growth_in_a_fork(ds)
    # The same metadata as per-record Python objects (0.2's lists), as a control of the measure.
    ds_lists = FERDataset([ds.paths[i] for i in range(n)], ds.labels, [ds.points[i] for i in range(n)], ds.boxes,
                          ds.indices, ds.transform, ds.view_mask)
    grown_lists = _growth_in_a_fork(ds_lists)
    assert grown_lists > 10 * 2**20, f"control: lists of objects should be copied ({grown_lists / 2**20:.1f} MiB)"
    assert grown < 4 * 2**20, f"a worker copied {grown / 2**20:.1f} MiB reading {n} records"
    print(f"private growth over {n} records: columns {grown / 2**20:.2f} MiB, lists {grown_lists / 2**20:.1f} MiB")


def test_duplicates_read_each_file_once_and_keep_the_digests_in_the_index(tmp_path, monkeypatch):
    import shutil

    from lightning_fer.data.duplicates import file_digest

    affectnet_layout(tmp_path / "an", 40, image_size=48, faces=7)
    images = sorted((tmp_path / "an" / "Manually_Annotated_Images").rglob("*.jpg"))
    shutil.copyfile(images[0], images[7])  # one byte-identical pair (the same drawn face: the same label)

    def module():
        return FERDataModule("affectnet", root=str(tmp_path / "an"), image_size=32, records={"duplicates": "drop"},
                             loader={"num_workers": 0})

    dm = module()
    dm.prepare_data()
    dm.setup("fit")
    assert dm.duplicate_report.groups == 1 and sum(dm.duplicate_report.dropped.values()) == 1
    records, index = dm.prepared.index()
    assert index.hashed.all()
    for i in range(len(records)):
        assert index.md5[i].tobytes().hex() == file_digest(records.path(i))
    def no_reading(paths, num_workers=4):
        raise AssertionError(f"read {len(paths)} file(s) for their digests again")

    with monkeypatch.context() as m:  # a warm start reads no file for its digests
        m.setattr("lightning_fer.data.prepare.file_digests", no_reading)
        again = module()
        again.prepare_data()
        again.setup("fit")
    assert again.splits["train"].tolist() == dm.splits["train"].tolist()
    # A migrated 0.2 index has no digests: the files are read once more, with the same decisions.
    _old_index(dm)
    dm2 = module()
    assert not dm2.prepared.index()[1].hashed.any()
    dm2.setup("fit")
    assert dm2.prepared.index()[1].hashed.all()
    assert dm2.duplicate_report.groups == 1 and dm2.splits["train"].tolist() == dm.splits["train"].tolist()
