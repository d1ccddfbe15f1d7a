"""A source's records as columns (:class:`RecordTable`), and their cache.

Sources read their files into :class:`~lightning_fer.data.sources.Record` lists once; the data
module keeps them as a :class:`RecordTable`: paths, keys, labels, splits, subjects, boxes and
landmarks in NumPy arrays, memory-mapped from one file in the cache folder. A table still reads
as a sequence of records (``table[i]`` is a ``Record``, made when asked for), so code written
against lists keeps working; the data module's own paths use the columns.

Where a source names the files it reads (:meth:`~lightning_fer.data.sources.FERSource.cache_inputs`:
AffectNet's CSVs, a manifest), the table is cached keyed by their sizes and modification times,
and a warm start reads no CSV at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lightning_fer.data.columns import ColumnFileError, Rows, StringColumn, read_columns, write_columns
from lightning_fer.data.sources.base import FERSource, Record, SourceReport
from lightning_fer.files import stale_temporaries

log = logging.getLogger(__name__)

#: Split codes: index into this tuple.
SPLIT_CODES: tuple[str | None, ...] = (None, "train", "val", "test")
#: Bumped when the record table's layout changes: older tables are rebuilt from the source.
TABLE_VERSION = 1


class RecordTable(Rows):
    """Records as columns. ``table[i]`` is the :class:`Record` of row ``i``; ``labels``,
    ``splits`` (codes into :data:`SPLIT_CODES`), ``subjects`` (codes into ``subject_names``,
    -1: unknown), ``boxes`` (``[N, 4]`` ``x, y, w, h``, NaN: none), ``landmarks``
    (``[N, K, 2]``, the first ``n_landmarks[i]`` rows of each are its points; 0: none) are arrays.

    Example:
        >>> t = RecordTable.of([Record("/d/a.jpg", "a.jpg", 1, split="train"), Record("/d/b.jpg", "b.jpg", 0)])
        >>> len(t), t.path(1), t[0].split, t.labels.tolist(), t.prefix
        (2, '/d/b.jpg', 'train', [1, 0], '/d/')
    """

    def __init__(self, keys: StringColumn, paths: StringColumn | None, prefix: str, labels: np.ndarray,
                 splits: np.ndarray, subjects: np.ndarray, subject_names: StringColumn, boxes: np.ndarray,
                 landmarks: np.ndarray, n_landmarks: np.ndarray, where: StringColumn) -> None:
        self.keys, self._paths, self.prefix = keys, paths, prefix
        self.labels, self.splits, self.subjects, self.subject_names = labels, splits, subjects, subject_names
        self.boxes, self.landmarks, self.n_landmarks, self.where = boxes, landmarks, n_landmarks, where

    @classmethod
    def of(cls, records: Sequence[Record] | RecordTable) -> RecordTable:
        """A table of ``records`` (a table is returned as it is)."""
        if isinstance(records, RecordTable):
            return records
        n = len(records)
        keys = [r.key for r in records]
        paths = [r.path for r in records]
        prefix = paths[0][: len(paths[0]) - len(keys[0])] if n and paths[0].endswith(keys[0]) else ""
        same = all(p == prefix + k for p, k in zip(paths, keys))
        names: dict[str, int] = {}
        subjects = np.array([-1 if r.subject in (None, "") else names.setdefault(r.subject, len(names))
                             for r in records], np.int32)
        boxes = np.full((n, 4), np.nan, np.float32)
        k = max((len(r.landmarks) for r in records if r.landmarks is not None), default=0)
        landmarks = np.zeros((n, k, 2), np.float32)
        n_landmarks = np.zeros(n, np.int16)
        for i, r in enumerate(records):
            if r.box is not None:
                boxes[i] = r.box
            if r.landmarks is not None:
                pts = np.asarray(r.landmarks, np.float32)
                landmarks[i, : len(pts)] = pts
                n_landmarks[i] = len(pts)
        bad = sorted({r.split for r in records} - set(SPLIT_CODES))
        if bad:
            raise ValueError(f"records with unknown split(s) {bad}; a record's split is one of {list(SPLIT_CODES)}")
        codes = {s: c for c, s in enumerate(SPLIT_CODES)}
        return cls(StringColumn.of(keys), None if same else StringColumn.of(paths), prefix if same else "",
                   np.array([r.label for r in records], np.int64), np.array([codes[r.split] for r in records], np.int8),
                   subjects, StringColumn.of(names), boxes, landmarks, n_landmarks,
                   StringColumn.of(r.where for r in records))

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        return self.prefix + self.keys[i] if self._paths is None else self._paths[i]

    @property
    def paths(self) -> Sequence[str]:
        """Every path, read row by row (no list is made)."""
        return _Paths(self)

    def split_names(self) -> np.ndarray:
        """Each row's split as a string array (``""``: none)."""
        return np.array(["" if s is None else s for s in SPLIT_CODES])[self.splits]

    def subject_list(self, ids: Sequence[int] | None = None) -> list[str | None]:
        ids = range(len(self)) if ids is None else ids
        names = list(self.subject_names)
        return [None if self.subjects[i] < 0 else names[self.subjects[i]] for i in ids]

    def landmarks_of(self, i: int) -> np.ndarray | None:
        n = int(self.n_landmarks[i])
        return np.asarray(self.landmarks[i, :n]) if n else None

    def box_of(self, i: int) -> tuple[float, float, float, float] | None:
        b = self.boxes[i]
        return None if np.isnan(b[0]) else tuple(float(v) for v in b)

    def row(self, i: int) -> Record:
        s = self.subjects[i]
        return Record(path=self.path(i), key=self.keys[i], label=int(self.labels[i]),
                      subject=None if s < 0 else self.subject_names[int(s)], split=SPLIT_CODES[self.splits[i]],
                      box=self.box_of(i), landmarks=self.landmarks_of(i), where=self.where[i])

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            yield self[i]

    def row_of(self, key: str) -> int | None:
        """The row of ``key`` (a lookup built on first use), or ``None``."""
        if getattr(self, "_rows", None) is None:
            self._rows = {k: i for i, k in enumerate(self.keys)}
        return self._rows.get(key)

    def digest(self) -> str:
        """A hash of the keys, labels and splits (what the landmark index aligns its rows by)."""
        h = hashlib.sha1()
        for a in (self.keys.data, self.keys.offsets, self.labels, self.splits):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def arrays(self) -> dict[str, np.ndarray]:
        out = {**self.keys.arrays("keys"), **self.subject_names.arrays("subject_names"), **self.where.arrays("where"),
               "labels": self.labels, "splits": self.splits, "subjects": self.subjects, "boxes": self.boxes,
               "landmarks": self.landmarks, "n_landmarks": self.n_landmarks}
        if self._paths is not None:
            out.update(self._paths.arrays("paths"))
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str) -> RecordTable:
        paths = StringColumn.from_arrays(a, "paths") if "paths.data" in a else None
        return cls(StringColumn.from_arrays(a, "keys"), paths, prefix, a["labels"], a["splits"], a["subjects"],
                   StringColumn.from_arrays(a, "subject_names"), a["boxes"], a["landmarks"], a["n_landmarks"],
                   StringColumn.from_arrays(a, "where"))


class _Paths(Rows):
    def __init__(self, table: RecordTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def row(self, i: int) -> str:
        return self.table.path(i)


class Taken(Rows):
    """Rows ``ids`` of a row-indexable column (a :class:`StringColumn`, a table's paths), read
    one at a time: a split's paths without a list of them."""

    def __init__(self, column: Sequence, ids: np.ndarray) -> None:
        self.column, self.ids = column, np.asarray(ids, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, i: int):
        return self.column[int(self.ids[i])]


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


def _stat_of(path: Path) -> list:
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns]


def load_records(source: FERSource, cache_dir: Path, name: str) -> tuple[RecordTable, list[str], SourceReport]:
    """The records of ``source`` as a table, with its class names and report: from the cache file
    ``cache_dir/name`` when the source's inputs (:meth:`FERSource.cache_inputs`) are unchanged,
    else read from the source (and cached where it names its inputs)."""
    inputs = source.cache_inputs()
    if inputs is None:
        records, names, report = source.load()
        return RecordTable.of(records), names, report
    stamp = {"version": TABLE_VERSION, "source": source.describe(), "options": inputs.get("options", {}),
             "files": [_stat_of(Path(p)) for p in inputs.get("files", [])]}
    stamp = json.loads(json.dumps(stamp))  # tuples as lists, as read back
    path = cache_dir / name
    for stale in stale_temporaries(path):
        stale.unlink(missing_ok=True)  # left by a run killed while writing the cache
    if path.is_file():
        try:
            header, arrays = read_columns(path)
        except (OSError, ColumnFileError, ValueError) as err:
            log.warning("record cache %s is unreadable (%s); reading the source again", path, err)
        else:
            if header.get("stamp") == stamp:
                report = SourceReport(kept=header["report"]["kept"])
                report.removed.update(header["report"]["removed"])
                return RecordTable.from_arrays(arrays, header["prefix"]), header["class_names"], report
            log.info("record cache %s: the source's files or options changed; reading the source again", path)
    records, names, report = source.load()
    table = RecordTable.of(records)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_columns(path, table.arrays(), {"stamp": stamp, "prefix": table.prefix, "class_names": list(names),
                                              "report": {"kept": report.kept, "removed": dict(report.removed)}})
    except OSError as err:
        log.warning("cannot write the record cache %s (%s); the source is read again next time", path, err)
        return table, names, report
    _, arrays = read_columns(path)  # the mapped copy: every process then shares the same pages
    return RecordTable.from_arrays(arrays, table.prefix), names, report
