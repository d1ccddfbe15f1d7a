"""Landmarks for every record, found once and cached: from the annotation, from MTCNN, or from a
template for pre-aligned crops.

The index cache is a JSON file next to the data (or in a folder the user names). While it is being
built, each finished chunk of images is appended to a journal; a run that is killed resumes from
the journal without redoing those images, and the finished cache only ever appears through an
atomic rename. An entry is redone when its file's size or modification time changes, and the
whole cache when a landmark setting changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightning_fer.data.detection import (
    CACHE_VERSION,
    FaceDetector,
    LandmarkSettings,
    template_points,
)
from lightning_fer.data.io import ImageReadError, load_image_checked
from lightning_fer.data.sources import Record
from lightning_fer.files import stale_temporaries, write_text
from lightning_fer.progress import Progress

log = logging.getLogger(__name__)




#: Landmark kinds that locate the parts: annotated points, MTCNN's points on a face it found, and
#: the template where the user chose it for aligned crops (``landmarks: template``). The
#: template put on a face MTCNN did not find (``template_fallback``) is a guess: its parts are
#: marked missing (see :class:`~lightning_fer.data.datamodule.FERDataModule`).
LOCATED_KINDS: frozenset[str] = frozenset({"annotation", "mtcnn", "template"})


@dataclass
class IndexEntry:
    """What ``prepare_data()`` learnt of one image."""

    ok: bool
    reason: str | None = None
    width: int = 0
    height: int = 0
    kind: str | None = None  # annotation | mtcnn | template | template_fallback | no_face
    points: np.ndarray | None = None  # MTCNN or template points; annotations stay in the record
    box: tuple[float, float, float, float] | None = None  # MTCNN face box (x0, y0, x1, y1)
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


class LandmarkIndex:
    """Builds and reads the index cache of one source.

    Args:
        cache_file: the finished cache's path; its journal sits beside it as ``<name>.journal``.
        settings: the landmark settings; a cache made with others is rebuilt.
    """

    def __init__(self, cache_file: str | os.PathLike, settings: LandmarkSettings) -> None:
        self.cache_file = Path(cache_file)
        self.journal_file = self.cache_file.with_name(self.cache_file.name + ".journal")
        self.settings = settings
        self._detector: FaceDetector | None = None

    # -- reading ---------------------------------------------------------------------------
    def _header(self) -> dict:
        return {"version": CACHE_VERSION, "settings": self.settings.fingerprint()}

    def _load_final(self) -> dict[str, dict]:
        if not self.cache_file.is_file():
            return {}
        try:
            with open(self.cache_file, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            log.warning("landmark cache %s is unreadable (%s); rebuilding it", self.cache_file, err)
            return {}
        if data.get("header") != self._header():
            log.info("landmark cache %s was made with other settings; rebuilding it", self.cache_file)
            return {}
        return {e["k"]: e for e in data.get("entries", [])}

    def _load_journal(self) -> dict[str, dict]:
        """Entries of an interrupted run; cuts a torn last line so appends start clean."""
        if not self.journal_file.is_file():
            return {}
        entries: dict[str, dict] = {}
        good_end = 0
        with open(self.journal_file, "rb") as f:
            raw = f.read()
        lines = raw.split(b"\n")
        # The last element is b"" after a complete final line, or a torn fragment.
        try:
            header = json.loads(lines[0]) if lines and lines[0] else None
        except json.JSONDecodeError:
            header = None
        if header != self._header() or len(lines) < 2:
            self.journal_file.unlink(missing_ok=True)
            return {}
        good_end = len(lines[0]) + 1
        for line in lines[1:-1]:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                break
            entries[e["k"]] = e
            good_end += len(line) + 1
        if good_end < len(raw):
            with open(self.journal_file, "r+b") as f:
                f.truncate(good_end)
        return entries

    # -- building --------------------------------------------------------------------------
    def build(
        self,
        records: Sequence[Record],
        num_workers: int = 2,
        batch_size: int = 32,
        chunk_size: int = 256,
        device: str | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, IndexEntry], IndexReport]:
        """Check every image once, find landmarks, and return key -> entry for all records."""
        t0 = time.perf_counter()
        report = IndexReport(total=len(records))
        for stale_tmp in stale_temporaries(self.cache_file):
            stale_tmp.unlink(missing_ok=True)  # left by a run killed while renaming
        stats: dict[str, tuple[int, int] | None] = {}
        cached = self._load_final()
        cached.update(self._load_journal())
        entries: dict[str, IndexEntry] = {}
        todo: list[tuple[Record, tuple[int, int] | None]] = []
        stale = False
        for rec in records:
            st = stats[rec.key] = _stat(rec.path)
            c = cached.get(rec.key)
            if st is None:
                entries[rec.key] = IndexEntry(ok=False, reason="file not found")
                stale |= c is not None
            elif c is not None and c.get("st") == list(st):
                entries[rec.key] = IndexEntry.from_json(c)
                report.from_cache += 1
            else:
                todo.append((rec, st))
        if self.settings.mode == "annotation":
            missing = [r for r, _ in todo if r.landmarks is None] + [
                r for r in records if r.landmarks is None and r.key in entries and entries[r.key].ok
            ]
            if missing:
                names = "\n  ".join(r.where or r.path for r in missing[:20])
                raise ValueError(
                    f"landmarks mode 'annotation', but {len(missing)} record(s) have no landmarks, e.g.\n  {names}\n"
                    "use mode 'auto' to detect them with MTCNN"
                )
        if todo:
            self.journal_file.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.journal_file.is_file()
            log.info("finding landmarks on %d image(s) (%d from cache)", len(todo), report.from_cache)
            with open(self.journal_file, "a", encoding="utf-8") as journal, Progress(len(todo), "landmarks") as bar:
                if fresh:
                    journal.write(json.dumps(self._header()) + "\n")
                with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
                    for start in range(0, len(todo), chunk_size):
                        chunk = todo[start : start + chunk_size]
                        results = self._process(chunk, pool, batch_size, device)
                        lines = []
                        for (rec, st), entry in zip(chunk, results):
                            entries[rec.key] = entry
                            lines.append(json.dumps(entry.to_json(rec.key, st)))
                        # One write per chunk, then fsync: a kill loses at most this chunk.
                        journal.write("\n".join(lines) + "\n")
                        journal.flush()
                        os.fsync(journal.fileno())
                        report.computed += len(chunk)
                        bar.update(len(chunk))
                        if on_chunk is not None:
                            on_chunk(report.computed)
        if todo or stale or not self.cache_file.is_file():
            self._write_final(records, entries, stats)
        for rec in records:
            e = entries[rec.key]
            if not e.ok:
                report.bad += 1
            report.kinds[e.kind or "unreadable"] += 1
        report.seconds = time.perf_counter() - t0
        return entries, report

    def _process(self, chunk, pool: ThreadPoolExecutor, batch_size: int, device: str | None) -> list[IndexEntry]:
        def decode(item):
            rec, _ = item
            try:
                return load_image_checked(rec.path), None
            except ImageReadError as err:
                return None, str(err).split(": ", 1)[-1]

        decoded = list(pool.map(decode, chunk))
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
        return results  # type: ignore[return-value]

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
            f"{rec.where or rec.path}: MTCNN found no face; set no_face to 'template' (pre-aligned crops) or "
            "'skip' to leave such images out"
        )

    def _write_final(
        self, records: Sequence[Record], entries: dict[str, IndexEntry], stats: dict[str, tuple[int, int] | None]
    ) -> None:
        data = {
            "header": self._header(),
            "entries": [
                entries[r.key].to_json(r.key, stats[r.key])
                for r in records
                if stats[r.key] is not None
            ],
        }
        write_text(self.cache_file, json.dumps(data))
        self.journal_file.unlink(missing_ok=True)


def _xyxy(box: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
    if box is None:
        return None
    x, y, w, h = box
    return (x, y, x + w, y + h)


def source_cache_name(description: str) -> str:
    """A cache file name unique to a source description."""
    return "index-" + hashlib.sha1(description.encode()).hexdigest()[:12] + ".json"
