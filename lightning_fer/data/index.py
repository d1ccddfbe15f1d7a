"""The landmark index as columns: what ``prepare_data()`` learnt of every record, one row per
record, memory-mapped from one column file (:mod:`~lightning_fer.data.columns`)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightning_fer.data.columns import ColumnFileError, StringColumn, read_columns, write_columns
from lightning_fer.data.journal import JournaledCache
from lightning_fer.data.records import RecordTable
from lightning_fer.data.regions import parts_coverage

log = logging.getLogger(__name__)

#: Landmark kinds that locate the parts: annotated points, MTCNN's points on a face it found, and
#: the template where the user chose it for aligned crops (``landmarks: template``). The
#: template put on a face MTCNN did not find (``template_fallback``) is a guess: its parts are
#: marked missing (see :class:`~lightning_fer.data.datamodule.FERDataModule`).
LOCATED_KINDS: frozenset[str] = frozenset({"annotation", "mtcnn", "template", "dlib", "dlib_whole"})
#: Every kind an index row can have (its ``kind`` column holds codes into this tuple; "" for an
#: unreadable image).
# Codes are stored in index files: new kinds are appended, never inserted.
KINDS: tuple[str, ...] = ("", "annotation", "mtcnn", "dlib", "template", "template_fallback", "no_face", "dlib_whole")


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
    md5: bytes | None = None  # of the file's bytes, once duplicates: drop has read it

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
            "md5": None if self.md5 is None else self.md5.hex(),
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
            md5=None if d.get("md5") is None else bytes.fromhex(d["md5"]),
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


class IndexTable:
    """What ``prepare_data()`` learnt of every record, as columns (row ``i`` is record ``i``):
    ``ok``, ``kind`` (codes into :data:`KINDS`), ``width``, ``height``, ``points`` (``[N, K, 2]``;
    the first ``n_points[i]``: MTCNN's 5, Dlib's 68 or the template's; annotations stay in the
    records), ``box`` (``[N, 4]`` ``x0, y0, x1, y1``, NaN: none), ``prob``, ``inside`` (``[N, 4]``:
    the share of each of the four parts' boxes inside the image, NaN where the parts are not
    located), ``md5`` (``[N, 16]``: the file's, where ``hashed``; what ``duplicates: drop``
    compares), ``size`` and ``mtime`` (the file's, -1: missing), ``reason`` and ``key``.

    ``table[key]`` and ``table[i]`` give an :class:`IndexEntry` (made when asked for).
    """

    COLUMNS = ("ok", "kind", "width", "height", "points", "n_points", "box", "prob", "inside", "size", "mtime",
               "md5", "hashed")

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
                "size": np.full(n, -1, np.int64), "mtime": np.full(n, -1, np.int64),
                "md5": np.zeros((n, 16), np.uint8), "hashed": np.zeros(n, bool)}
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


def set_row(t: IndexTable, reasons: list[str], i: int, e: IndexEntry, st: tuple[int, int] | None) -> None:
    """Row ``i`` of ``t`` (and of ``reasons``) from an entry and its file's size and time."""
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
    t.cols["hashed"][i] = e.md5 is not None
    if e.md5 is not None:
        t.cols["md5"][i] = np.frombuffer(e.md5, np.uint8)
    reasons[i] = e.reason or ""



def from_json(entries: dict[str, dict], table: RecordTable) -> IndexTable:
    """An index of ``table``'s rows from a 0.2 JSON index's entries (rows it lacks: size -1)."""
    out = IndexTable.empty(len(table), 68 if any(len(e.get("pts") or ()) == 136 for e in entries.values()) else 5)
    reasons = [""] * len(table)
    for i, key in enumerate(table.keys):
        d = entries.get(key)
        if d is not None and d.get("st"):
            set_row(out, reasons, i, IndexEntry.from_json(d), tuple(d["st"]))
    out.reasons = StringColumn.of(reasons)
    out.keys = table.keys
    return out



def realigned(saved: IndexTable, table: RecordTable) -> IndexTable:
    """``saved`` with its rows in ``table``'s order, by key (rows it lacks: size -1)."""
    rows = {k: i for i, k in enumerate(saved.keys)}
    at = np.array([rows.get(k, -1) for k in table.keys], np.int64)
    have = at >= 0
    out = IndexTable.empty(len(table), saved.points.shape[1])
    for name, col in saved.cols.items():
        out.cols[name][have] = col[at[have]]
    out.cols["size"][~have] = -1
    reasons = [saved.reasons[j] if j >= 0 else "" for j in at.tolist()]
    return IndexTable(out.cols, table.keys, StringColumn.of(reasons))



def set_coverage(index: IndexTable, table: RecordTable, rows: np.ndarray) -> None:
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




def load_saved(cache_file: Path, legacy_file: Path, header: dict,
               table: RecordTable) -> tuple[IndexTable | None, bool]:
    """The saved index with its rows in ``table``'s order (rows it lacks: size -1), whether it
    was saved for exactly this table (else it must be rewritten). A 0.2 JSON index is migrated
    (the JSON file is left for a 0.2 install that shares the folder)."""
    if cache_file.is_file():
        try:
            saved_header, saved = IndexTable.load(cache_file)
        except (OSError, ColumnFileError, ValueError, KeyError) as err:
            log.warning("landmark index %s is unreadable (%s); rebuilding it", cache_file, err)
        else:
            if {k: saved_header.get(k) for k in header} != header:
                log.info("landmark index %s was made with other settings; rebuilding it", cache_file)
            elif saved_header.get("records") == table.digest() and len(saved) == len(table):
                return saved, True
            else:
                log.info("landmark index %s: the records changed; realigning it", cache_file)
                return realigned(saved, table), False
    if legacy_file.is_file():
        old = JournaledCache(legacy_file, header).load()
        if old:
            log.warning("migrating the JSON landmark index %s (lightning_fer 0.2) to the column file %s (%d "
                        "entries kept; the JSON file is left as it is, for a 0.2 install sharing this folder)", legacy_file, cache_file, len(old))
        else:
            log.warning("the JSON landmark index %s (lightning_fer 0.2) cannot be used (other settings or "
                        "unreadable); rebuilding the index as %s", legacy_file, cache_file)
        return from_json(old, table), False
    return None, False
