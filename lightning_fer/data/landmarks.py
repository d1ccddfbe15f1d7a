"""Landmarks for every record, found once and cached: from the annotation, from MTCNN, from
Dlib, or from a template for pre-aligned crops.

The index is an :class:`IndexTable`: one row per record, every field a NumPy array, stored as one
column file (:mod:`~lightning_fer.data.columns`) next to the data (or in a folder the user names)
and memory-mapped by every process and loader worker that reads it. Its rows follow the record
table's, so a warm start aligns them without a key lookup.

While images are checked, each finished chunk is appended to a journal (JSON lines, fsync'd per
chunk): a run that is killed resumes from it without redoing those images. A few new or changed
images stay in the journal, read over the table at load; the table is rewritten (atomically: a
kill leaves the old one or the new one) when the journal grows past a share of it, when the
records change, or when the index is built. An entry is redone when its file's size or
modification time changes, and the whole index when a landmark setting changes. A JSON index
made by lightning_fer 0.2 is migrated, with a log line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightning_fer.data.columns import ColumnFileError, StringColumn, read_columns, write_columns
from lightning_fer.data.detection import (
    CACHE_VERSION,
    FaceDetector,
    LandmarkSettings,
    template_points,
)
from lightning_fer.data.io import ImageReadError, load_image_checked
from lightning_fer.data.journal import JournaledCache
from lightning_fer.data.records import RecordTable
from lightning_fer.data.regions import parts_coverage
from lightning_fer.data.sources import Record
from lightning_fer.files import stale_temporaries
from lightning_fer.progress import Progress

log = logging.getLogger(__name__)




#: Landmark kinds that locate the parts: annotated points, MTCNN's points on a face it found, and
#: the template where the user chose it for aligned crops (``landmarks: template``). The
#: template put on a face MTCNN did not find (``template_fallback``) is a guess: its parts are
#: marked missing (see :class:`~lightning_fer.data.datamodule.FERDataModule`).
LOCATED_KINDS: frozenset[str] = frozenset({"annotation", "mtcnn", "template", "dlib"})
#: Every kind an index row can have (its ``kind`` column holds codes into this tuple; "" for an
#: unreadable image).
KINDS: tuple[str, ...] = ("", "annotation", "mtcnn", "dlib", "template", "template_fallback", "no_face")
#: Journal rows past which (and past this share of the table) the table is rewritten.
JOURNAL_ROWS, JOURNAL_SHARE = 4096, 0.05


@dataclass
class IndexEntry:
    """What ``prepare_data()`` learnt of one image."""

    ok: bool
    reason: str | None = None
    width: int = 0
    height: int = 0
    kind: str | None = None  # annotation | mtcnn | dlib | template | template_fallback | no_face
    points: np.ndarray | None = None  # MTCNN's 5, Dlib's 68 or the template's; annotations stay in the record
    box: tuple[float, float, float, float] | None = None  # MTCNN's face box (x0, y0, x1, y1), Dlib's where it came from MTCNN
    prob: float | None = None

    def to_json(self, key: str, stat: tuple[int, int] | None) -> dict:
        return {
            "k": key,
            "st": list(stat) if stat else None,
            "ok": self.ok,
            "err": self.reason,
            "w": self.width,
            "h": self.height,
            "kind": self.kind,
            "pts": None if self.points is None else [round(float(v), 3) for v in self.points.reshape(-1)],
            "box": None if self.box is None else [round(float(v), 3) for v in self.box],
            "p": self.prob,
        }

    @classmethod
    def from_json(cls, d: dict) -> IndexEntry:
        pts = d.get("pts")
        return cls(
            ok=d["ok"],
            reason=d.get("err"),
            width=d.get("w", 0),
            height=d.get("h", 0),
            kind=d.get("kind"),
            points=None if pts is None else np.asarray(pts, dtype=np.float32).reshape(-1, 2),
            box=None if d.get("box") is None else tuple(d["box"]),
            prob=d.get("p"),
        )


@dataclass
class IndexReport:
    """Counts from one ``build_index`` run."""

    total: int = 0
    from_cache: int = 0
    computed: int = 0
    kinds: Counter = field(default_factory=Counter)
    bad: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")

    @property
    def located(self) -> int:
        """Faces whose parts are located (annotation, MTCNN, or the chosen template)."""
        return sum(v for k, v in self.kinds.items() if k in LOCATED_KINDS)

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        rate = f" ({self.images_per_second:.1f} images/s)" if self.computed else ""
        usable = self.total - self.bad
        share = f" ({100 * self.located / usable:.1f}%)" if usable else ""
        return (
            f"{self.total} images: {self.from_cache} from cache, {self.computed} checked now{rate}; "
            f"landmarks: {kinds or 'none'}; parts located on {self.located} of {usable} usable faces{share}; "
            f"unusable: {self.bad}"
        )


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def stat_all(paths, num_workers: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and modification times (ns) of ``paths`` (-1 where missing), by a few threads
    (a stat is a system call that releases the GIL; on network storage it is the wait)."""
    n = len(paths)
    size, mtime = np.full(n, -1, np.int64), np.full(n, -1, np.int64)

    def part(rows: range) -> None:
        for i in rows:
            st = _stat(paths[i])
            if st is not None:
                size[i], mtime[i] = st

    step = -(-n // max(1, num_workers)) or 1
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        list(pool.map(part, [range(s, min(n, s + step)) for s in range(0, n, step)]))
    return size, mtime


class IndexTable:
    """What ``prepare_data()`` learnt of every record, as columns (row ``i`` is record ``i``):
    ``ok``, ``kind`` (codes into :data:`KINDS`), ``width``, ``height``, ``points`` (``[N, K, 2]``;
    the first ``n_points[i]``: MTCNN's 5, Dlib's 68 or the template's; annotations stay in the
    records), ``box`` (``[N, 4]`` ``x0, y0, x1, y1``, NaN: none), ``prob``, ``inside`` (``[N, 4]``:
    the share of each of the four parts' boxes inside the image, NaN where the parts are not
    located), ``size`` and ``mtime`` (the file's, -1: missing), ``reason`` and ``key``.

    ``table[key]`` and ``table[i]`` give an :class:`IndexEntry` (made when asked for).
    """

    COLUMNS = ("ok", "kind", "width", "height", "points", "n_points", "box", "prob", "inside", "size", "mtime")

    def __init__(self, cols: dict[str, np.ndarray], keys: StringColumn, reasons: StringColumn) -> None:
        self.cols, self.keys, self.reasons = cols, keys, reasons
        for name in self.COLUMNS:
            setattr(self, name, cols[name])
        self._rows: dict[str, int] | None = None

    @classmethod
    def empty(cls, n: int, k: int = 5) -> IndexTable:
        cols = {"ok": np.zeros(n, bool), "kind": np.zeros(n, np.int8), "width": np.zeros(n, np.int32),
                "height": np.zeros(n, np.int32), "points": np.zeros((n, k, 2), np.float32),
                "n_points": np.zeros(n, np.int16), "box": np.full((n, 4), np.nan, np.float32),
                "prob": np.full(n, np.nan, np.float32), "inside": np.full((n, 4), np.nan, np.float32),
                "size": np.full(n, -1, np.int64), "mtime": np.full(n, -1, np.int64)}
        return cls(cols, StringColumn.of([""] * n), StringColumn.of([""] * n))

    def __len__(self) -> int:
        return len(self.ok)

    def row(self, key: str) -> int:
        if self._rows is None:
            self._rows = {k: i for i, k in enumerate(self.keys)}
        return self._rows[key]

    def kind_of(self, i: int) -> str | None:
        return KINDS[self.kind[i]] or None

    def __getitem__(self, i: int | str) -> IndexEntry:
        if isinstance(i, str):
            i = self.row(i)
        n = int(self.n_points[i])
        box = self.box[i]
        return IndexEntry(ok=bool(self.ok[i]), reason=self.reasons[i] or None, width=int(self.width[i]),
                          height=int(self.height[i]), kind=self.kind_of(i),
                          points=np.array(self.points[i, :n]) if n else None,
                          box=None if np.isnan(box[0]) else tuple(float(v) for v in box),
                          prob=None if np.isnan(self.prob[i]) else float(self.prob[i]))

    def kinds(self, names) -> np.ndarray:
        """Rows whose kind is one of ``names``."""
        return np.isin(self.kind, [KINDS.index(k) for k in names])

    def save(self, path: Path, header: dict) -> None:
        write_columns(path, {**self.cols, **self.keys.arrays("key"), **self.reasons.arrays("reason")}, header)

    @classmethod
    def load(cls, path: Path) -> tuple[dict, IndexTable]:
        header, a = read_columns(path)
        cols = {name: a[name] for name in cls.COLUMNS}
        return header, cls(cols, StringColumn.from_arrays(a, "key"), StringColumn.from_arrays(a, "reason"))

    def writable(self, k: int) -> IndexTable:
        """A copy in memory, with room for ``k`` points per row."""
        cols = {name: np.array(v) for name, v in self.cols.items()}
        if cols["points"].shape[1] < k:
            pts = np.zeros((len(self), k, 2), np.float32)
            pts[:, : cols["points"].shape[1]] = cols["points"]
            cols["points"] = pts
        return IndexTable(cols, StringColumn.of(list(self.keys)), StringColumn.of(list(self.reasons)))


class LandmarkIndex:
    """Builds and reads the index of one source.

    Args:
        cache_file: the index's path (a ``.col`` column file; a ``.json`` name is taken as the
            same name with ``.col``: the JSON beside it is a 0.2 index, migrated). Its journal
            sits beside it as ``<name>.journal``.
        settings: the landmark settings; an index made with others is rebuilt.
    """

    def __init__(self, cache_file: str | os.PathLike, settings: LandmarkSettings) -> None:
        self.cache_file = Path(cache_file).with_suffix(".col")
        self.legacy_file = self.cache_file.with_suffix(".json")
        self.settings = settings
        self.header = {"version": CACHE_VERSION, "settings": settings.fingerprint()}
        self.cache = JournaledCache(self.cache_file, self.header)
        self.journal_file = self.cache.journal_file
        self._detector: FaceDetector | None = None
        self._dlib = None

    # -- reading -------------------------------------------------------------------------
    def _saved(self, table: RecordTable) -> tuple[IndexTable | None, bool]:
        """The saved index with its rows in ``table``'s order (rows it lacks: size -1), and
        whether it was saved for exactly this table (else it must be rewritten)."""
        if self.cache_file.is_file():
            try:
                header, saved = IndexTable.load(self.cache_file)
            except (OSError, ColumnFileError, ValueError, KeyError) as err:
                log.warning("landmark index %s is unreadable (%s); rebuilding it", self.cache_file, err)
            else:
                if {k: header.get(k) for k in self.header} != self.header:
                    log.info("landmark index %s was made with other settings; rebuilding it", self.cache_file)
                elif header.get("records") == table.digest() and len(saved) == len(table):
                    return saved, True
                else:
                    log.info("landmark index %s: the records changed; realigning it", self.cache_file)
                    return self._realigned(saved, table), False
        legacy = self.cache.__class__(self.legacy_file, self.header)
        if self.legacy_file.is_file():
            old = legacy.load()
            if old:
                log.warning("migrating the JSON landmark index %s (lightning_fer 0.2) to the column file %s (%d "
                            "entries kept; the JSON file is removed)", self.legacy_file, self.cache_file, len(old))
            else:
                log.warning("the JSON landmark index %s (lightning_fer 0.2) cannot be used (other settings or "
                            "unreadable); rebuilding the index as %s", self.legacy_file, self.cache_file)
            migrated = self._from_json(old, table)
            self._migrated = True
            return migrated, False
        return None, False

    def _from_json(self, entries: dict[str, dict], table: RecordTable) -> IndexTable:
        out = IndexTable.empty(len(table), 68 if any(len(e.get("pts") or ()) == 136 for e in entries.values()) else 5)
        reasons = [""] * len(table)
        for i, key in enumerate(table.keys):
            d = entries.get(key)
            if d is not None and d.get("st"):
                self._set(out, reasons, i, IndexEntry.from_json(d), tuple(d["st"]))
        out.reasons = StringColumn.of(reasons)
        out.keys = table.keys
        return out

    def _realigned(self, saved: IndexTable, table: RecordTable) -> IndexTable:
        rows = {k: i for i, k in enumerate(saved.keys)}
        at = np.array([rows.get(k, -1) for k in table.keys], np.int64)
        have = at >= 0
        out = IndexTable.empty(len(table), saved.points.shape[1])
        for name, col in saved.cols.items():
            out.cols[name][have] = col[at[have]]
        out.cols["size"][~have] = -1
        reasons = [saved.reasons[j] if j >= 0 else "" for j in at.tolist()]
        return IndexTable(out.cols, table.keys, StringColumn.of(reasons))

    @staticmethod
    def _set(t: IndexTable, reasons: list[str], i: int, e: IndexEntry, st: tuple[int, int] | None) -> None:
        t.cols["ok"][i] = e.ok
        t.cols["kind"][i] = KINDS.index(e.kind or "")
        t.cols["width"][i], t.cols["height"][i] = e.width, e.height
        n = 0 if e.points is None else len(e.points)
        t.cols["n_points"][i] = n
        if n:
            t.cols["points"][i, :n] = e.points
        t.cols["box"][i] = np.nan if e.box is None else e.box
        t.cols["prob"][i] = np.nan if e.prob is None else e.prob
        t.cols["size"][i], t.cols["mtime"][i] = st if st is not None else (-1, -1)
        reasons[i] = e.reason or ""

    # -- building --------------------------------------------------------------------------
    def build(
        self,
        records: Sequence[Record] | RecordTable,
        num_workers: int = 2,
        batch_size: int = 32,
        chunk_size: int = 256,
        device: str | None = None,
        on_chunk: Callable[[int], None] | None = None,
        verify: bool = True,
    ) -> tuple[IndexTable, IndexReport]:
        """Check every image once, find landmarks, and return the index of all records.

        Args:
            verify: stat every file and redo those whose size or modification time changed.
                ``False`` trusts the index's own sizes and times (another process on this
                machine verified them, or the user said so): only rows the index lacks are done.
        """
        t0 = time.perf_counter()
        self._migrated = False
        for stale_file in stale_temporaries(self.cache_file):
            stale_file.unlink(missing_ok=True)  # left by a run killed while writing the index
        table = RecordTable.of(records)
        n = len(table)
        report = IndexReport(total=n)
        saved, aligned = self._saved(table)
        k_needed = 68 if self.settings.mode == "dlib" else 5
        if saved is None:
            saved, aligned = IndexTable.empty(n, k_needed), False
            saved.keys = table.keys
        journal = self.cache._load_journal() if self.journal_file.is_file() else {}
        if verify:
            size, mtime = stat_all(table.paths, max(4, num_workers))
        else:  # the index's own sizes and times; rows it lacks are looked at
            size, mtime = np.array(saved.size), np.array(saved.mtime)
            for i in np.flatnonzero(size < 0).tolist():
                size[i], mtime[i] = _stat(table.path(i)) or (-1, -1)
        index = saved
        journaled = np.zeros(n, bool)
        reasons: list[str] | None = None
        if journal:
            index, reasons = saved.writable(k_needed), list(saved.reasons)
            for key, d in journal.items():
                i = d.get("i")
                if not (isinstance(i, int) and 0 <= i < n and table.keys[i] == key):
                    i = _row_of(table, key)
                if i is None or not d.get("st"):
                    continue
                self._set(index, reasons, i, IndexEntry.from_json(d), tuple(d["st"]))
                journaled[i] = True
            index.reasons = StringColumn.of(reasons)
        missing = size == -1
        same = (np.asarray(index.size) == size) & (np.asarray(index.mtime) == mtime) & ~missing
        todo = np.flatnonzero(~same & ~missing)
        stale = bool(np.any(missing & (np.asarray(index.size) >= 0)))
        report.from_cache = int(same.sum())
        if self.settings.mode == "annotation":
            ann = table.n_landmarks > 0
            lacking = np.flatnonzero(~ann & ~missing)
            if len(lacking):
                names = "\n  ".join(table.where[i] or table.path(i) for i in lacking[:20])
                raise ValueError(
                    f"landmarks mode 'annotation', but {len(lacking)} record(s) have no landmarks, e.g.\n  {names}\n"
                    "use mode 'auto' to detect them with MTCNN"
                )
        if len(todo) or missing.any() or not aligned:
            if index is saved:
                index, reasons = saved.writable(k_needed), list(saved.reasons)
            elif index.points.shape[1] < k_needed:
                index = index.writable(k_needed)
        if len(todo):
            if not verify:
                log.warning("landmark index %s lacks %d record(s) that prepare_data() should have checked; checking "
                            "them here", self.cache_file, len(todo))
            log.info("finding landmarks on %d image(s) (%d from cache)", len(todo), report.from_cache)
            with self.cache.journal() as append, Progress(len(todo), "landmarks") as bar, \
                    ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
                for start in range(0, len(todo), chunk_size):
                    rows = todo[start : start + chunk_size]
                    chunk = [(table[int(i)], (int(size[i]), int(mtime[i]))) for i in rows]
                    results = self._process(chunk, pool, batch_size, device)
                    lines = []
                    for i, (rec, st), entry in zip(rows.tolist(), chunk, results):
                        self._set(index, reasons, i, entry, st)
                        lines.append({**entry.to_json(rec.key, st), "i": i})
                    self._coverage(index, table, rows)
                    append(lines)
                    journaled[rows] = True
                    report.computed += len(chunk)
                    bar.update(len(chunk))
                    if on_chunk is not None:
                        on_chunk(report.computed)
        if missing.any():
            gone = np.flatnonzero(missing)
            index.cols["ok"][gone] = False
            index.cols["kind"][gone] = 0
            index.cols["size"][gone] = index.cols["mtime"][gone] = -1
            for i in gone.tolist():
                reasons[i] = "file not found"
        if reasons is not None:
            index.reasons = StringColumn.of(reasons)
            index.keys = table.keys
        if not aligned:
            self._coverage(index, table, np.arange(n))  # annotations may have changed with the records
        rewrite = (not aligned or stale or not self.cache_file.is_file()
                   or journaled.sum() > max(JOURNAL_ROWS, JOURNAL_SHARE * n))
        if rewrite:
            index.save(self.cache_file, {**self.header, "records": table.digest()})
            self.journal_file.unlink(missing_ok=True)
            if self._migrated:
                self.legacy_file.unlink(missing_ok=True)
                self.legacy_file.with_name(self.legacy_file.name + ".journal").unlink(missing_ok=True)
            header, index = IndexTable.load(self.cache_file)  # mapped: shared by every process
        elif len(todo):
            log.info("landmark index %s: %d changed image(s) kept in its journal %s (the index is rewritten past %d)",
                     self.cache_file, int(journaled.sum()), self.journal_file.name,
                     int(max(JOURNAL_ROWS, JOURNAL_SHARE * n)))
        kinds = np.bincount(index.kind, minlength=len(KINDS))
        report.bad = int((~np.asarray(index.ok)).sum())
        for code, count in enumerate(kinds.tolist()):
            if count:
                report.kinds[KINDS[code] or "unreadable"] += count
        report.seconds = time.perf_counter() - t0
        return index, report

    @staticmethod
    def _coverage(index: IndexTable, table: RecordTable, rows: np.ndarray) -> None:
        """The ``inside`` column of ``rows``, from the points the parts are cut from."""
        if not len(rows):
            return
        kind = index.cols["kind"][rows]
        located = np.isin(kind, [KINDS.index(k) for k in LOCATED_KINDS]) & index.cols["ok"][rows]
        index.cols["inside"][rows] = np.nan
        ann = kind == KINDS.index("annotation")
        w = index.cols["width"][rows].astype(np.float32)
        h = index.cols["height"][rows].astype(np.float32)
        for use_ann in (True, False):
            sel = located & (ann if use_ann else ~ann)
            count = table.n_landmarks[rows] if use_ann else index.cols["n_points"][rows]
            for k in (5, 68):
                m = sel & (count == k)
                if not m.any():
                    continue
                r = rows[m]
                pts = (table.landmarks if use_ann else index.cols["points"])[r, :k]
                index.cols["inside"][r] = parts_coverage(np.asarray(pts), w[m], h[m])


    def _process(self, chunk, pool: ThreadPoolExecutor, batch_size: int, device: str | None) -> list[IndexEntry]:
        def decode(item):
            rec, _ = item
            try:
                return load_image_checked(rec.path), None
            except ImageReadError as err:
                return None, str(err).split(": ", 1)[-1]

        def decode_many(items):
            return [decode(item) for item in items]

        # One task per thread and chunk (a task per image costs more in the pool than a decode).
        step = -(-len(chunk) // max(1, pool._max_workers))
        decoded = [d for part in pool.map(decode_many, [chunk[s : s + step] for s in range(0, len(chunk), step)])
                   for d in part]
        results: list[IndexEntry | None] = [None] * len(chunk)
        to_detect: dict[tuple[int, int], list[int]] = {}
        mode = self.settings.mode
        for i, ((rec, _), (img, err)) in enumerate(zip(chunk, decoded)):
            if img is None:
                results[i] = IndexEntry(ok=False, reason=err)
                continue
            h, w = img.shape[:2]
            if mode == "template":
                results[i] = IndexEntry(ok=True, width=w, height=h, kind="template", points=template_points(w, h))
            elif mode == "dlib" and (self.settings.dlib_on == "image" or rec.box is not None):
                box = (0.0, 0.0, float(w), float(h)) if self.settings.dlib_on == "image" else _xyxy(rec.box)
                results[i] = IndexEntry(ok=True, width=w, height=h, kind="dlib", points=self._dlib_points(img, box))
            elif rec.landmarks is not None and mode in ("auto", "annotation"):
                results[i] = IndexEntry(ok=True, width=w, height=h, kind="annotation")
            else:
                to_detect.setdefault((h, w), []).append(i)
        if to_detect:
            if self._detector is None:
                self._detector = FaceDetector(self.settings, device)
            for (h, w), idx in to_detect.items():
                for s in range(0, len(idx), batch_size):
                    batch = idx[s : s + batch_size]
                    hints = [_xyxy(chunk[i][0].box) for i in batch]
                    found = self._detector.detect([decoded[i][0] for i in batch], hints)
                    for i, f in zip(batch, found):
                        results[i] = self._detected(chunk[i][0], f, w, h)
                        if mode == "dlib" and results[i].kind == "mtcnn":  # Dlib's 68 points on MTCNN's box
                            e = results[i]
                            results[i] = IndexEntry(ok=True, width=w, height=h, kind="dlib", box=e.box, prob=e.prob,
                                                    points=self._dlib_points(decoded[i][0], e.box))
        return results  # type: ignore[return-value]

    def _dlib_points(self, image: np.ndarray, box) -> np.ndarray:
        if self._dlib is None:
            from lightning_fer.data.detection import DlibLandmarks

            self._dlib = DlibLandmarks(self.settings.dlib_model)
        return self._dlib.points(image, box)

    def _detected(self, rec: Record, found, w: int, h: int) -> IndexEntry:
        if found is not None:
            pts, box, prob = found
            return IndexEntry(ok=True, width=w, height=h, kind="mtcnn", points=pts, box=tuple(box), prob=prob)
        policy = self.settings.no_face
        if policy == "template":
            return IndexEntry(ok=True, width=w, height=h, kind="template_fallback", points=template_points(w, h))
        if policy == "skip":
            return IndexEntry(ok=False, reason="no face found by MTCNN", width=w, height=h, kind="no_face")
        raise ValueError(
            f"{rec.where or rec.path}: MTCNN found no face; set landmarks.no_face to 'template' (pre-aligned crops) or "
            "'skip' to leave such images out"
        )


def _xyxy(box: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
    if box is None:
        return None
    x, y, w, h = box
    return (x, y, x + w, y + h)


def source_cache_name(description: str) -> str:
    """A cache file name unique to a source description."""
    return "index-" + hashlib.sha1(description.encode()).hexdigest()[:12] + ".col"


def _row_of(table: RecordTable, key: str) -> int | None:
    rows = getattr(table, "_row_lookup", None)
    if rows is None:
        rows = table._row_lookup = {k: i for i, k in enumerate(table.keys)}
    return rows.get(key)
