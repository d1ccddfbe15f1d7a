"""Landmarks for every record, found once and cached: from the annotation, from MTCNN, from
Dlib, or from a template for pre-aligned crops, into an :class:`~lightning_fer.data.index.IndexTable`
(one column file, memory-mapped by every process; rows follow the record table's).

While images are checked, each finished chunk is appended to a journal (fsync'd per chunk): a
killed run resumes from it. A few new or changed images stay in the journal, read over the table
at load; the table is rewritten atomically (a kill leaves the old one or the new one) past a share
of it, when the records change, or when the index is built. An entry is redone when its file's
size or modification time changes, the whole index when a setting does. A 0.2 JSON index is migrated.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lightning_fer.data.columns import StringColumn
from lightning_fer.data.detection import CACHE_VERSION, FaceDetector, LandmarkSettings, template_points
from lightning_fer.data.index import (  # noqa: F401 (KINDS, LOCATED_KINDS, IndexEntry: where 0.2 had them)
    KINDS,
    LOCATED_KINDS,
    IndexEntry,
    IndexReport,
    IndexTable,
    load_saved,
    realigned,
    set_coverage,
    set_row,
)
from lightning_fer.data.io import ImageReadError, load_image_checked
from lightning_fer.data.journal import JournaledCache
from lightning_fer.data.records import RecordTable, _stat, stat_all
from lightning_fer.data.sources import Record
from lightning_fer.files import stale_temporaries
from lightning_fer.progress import Progress

log = logging.getLogger(__name__)

#: Journal rows past which (and past this share of the table) the table is rewritten.
JOURNAL_ROWS, JOURNAL_SHARE = 4096, 0.05


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
        for stale_file in stale_temporaries(self.cache_file):
            stale_file.unlink(missing_ok=True)  # left by a run killed while writing the index
        table = RecordTable.of(records)
        n = len(table)
        report = IndexReport(total=n)
        saved, aligned = load_saved(self.cache_file, self.legacy_file, self.header, table)
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
                    i = table.row_of(key)
                if i is None or not d.get("st"):
                    continue
                set_row(index, reasons, i, IndexEntry.from_json(d), tuple(d["st"]))
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
                def finish(rows, chunk, decoding) -> None:
                    results = self._process(chunk, [d for f in decoding for d in f.result()], batch_size, device)
                    lines = []
                    for i, (rec, st), entry in zip(rows.tolist(), chunk, results):
                        set_row(index, reasons, i, entry, st)
                        lines.append({**entry.to_json(rec.key, st), "i": i})
                    set_coverage(index, table, rows)
                    append(lines)
                    journaled[rows] = True
                    report.computed += len(chunk)
                    bar.update(len(chunk))
                    if on_chunk is not None:
                        on_chunk(report.computed)

                pending = None  # one chunk decodes in the threads while the last one's results are kept
                for start in range(0, len(todo), chunk_size):
                    rows = todo[start : start + chunk_size]
                    chunk = [(table[int(i)], (int(size[i]), int(mtime[i]))) for i in rows]
                    decoding = self._decode(chunk, pool)
                    if pending is not None:
                        finish(*pending)
                    pending = (rows, chunk, decoding)
                if pending is not None:
                    finish(*pending)
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
            set_coverage(index, table, np.arange(n))  # annotations may have changed with the records
        rewrite = (not aligned or stale or not self.cache_file.is_file()
                   or journaled.sum() > max(JOURNAL_ROWS, JOURNAL_SHARE * n))
        if rewrite:
            index.save(self.cache_file, {**self.header, "records": table.digest()})
            self.journal_file.unlink(missing_ok=True)
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

    def store_digests(self, index: IndexTable, table: RecordTable, rows: np.ndarray, digests: list[str]) -> IndexTable:
        """``index`` with the files' MD5s of ``rows`` kept (``duplicates: drop`` reads each file
        once, not at every ``setup()``), rewritten atomically; the mapped copy is returned."""
        index = index.writable(index.points.shape[1])
        index.cols["md5"][rows] = np.frombuffer(bytes.fromhex("".join(digests)), np.uint8).reshape(-1, 16)
        index.cols["hashed"][rows] = True
        index.save(self.cache_file, {**self.header, "records": table.digest()})
        self.journal_file.unlink(missing_ok=True)  # its rows are in the table just written
        return IndexTable.load(self.cache_file)[1]

    @staticmethod
    def _decode(chunk, pool: ThreadPoolExecutor) -> list:
        """Futures of the chunk's decoded images (``(image, None)`` or ``(None, reason)``), one task
        per thread (a task per image costs more in the pool than a decode)."""
        def decode_many(items):
            out = []
            for rec, _ in items:
                try:
                    out.append((load_image_checked(rec.path), None))
                except ImageReadError as err:
                    out.append((None, str(err).split(": ", 1)[-1]))
            return out

        step = -(-len(chunk) // max(1, pool._max_workers))
        return [pool.submit(decode_many, chunk[s : s + step]) for s in range(0, len(chunk), step)]

    def _process(self, chunk, decoded: list, batch_size: int, device: str | None) -> list[IndexEntry]:
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
            elif mode == "dlib" and self.settings.dlib_on == "find":
                results[i] = self._dlib_found(img, w, h)
            elif mode == "dlib" and (self.settings.dlib_on == "image" or rec.box is not None):
                box = (0.0, 0.0, float(w), float(h)) if self.settings.dlib_on == "image" else _xyxy(rec.box)
                results[i] = IndexEntry(ok=True, width=w, height=h, kind="dlib", points=self._dlib_model().points(img, box))
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
                                                    points=self._dlib_model().points(decoded[i][0], e.box))
        return results  # type: ignore[return-value]

    def _dlib_model(self):
        if self._dlib is None:
            from lightning_fer.data.detection import DlibLandmarks

            self._dlib = DlibLandmarks(self.settings.dlib_model)
        return self._dlib

    def _dlib_found(self, image: np.ndarray, w: int, h: int) -> IndexEntry:
        """Dlib's points on the face its detector finds (kind ``dlib``), else on the whole picture (``dlib_whole``)."""
        box, points = self._dlib_model().locate(image)
        return IndexEntry(ok=True, width=w, height=h, kind="dlib" if box else "dlib_whole", box=box,
                          prob=1.0 if box else None, points=points)

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
