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
from lightning_fer.data.journal import JournaledCache
from lightning_fer.data.sources import Record
from lightning_fer.progress import Progress

log = logging.getLogger(__name__)




#: Landmark kinds that locate the parts: annotated points, MTCNN's points on a face it found, and
#: the template where the user chose it for aligned crops (``landmarks: template``). The
#: template put on a face MTCNN did not find (``template_fallback``) is a guess: its parts are
#: marked missing (see :class:`~lightning_fer.data.datamodule.FERDataModule`).
LOCATED_KINDS: frozenset[str] = frozenset({"annotation", "mtcnn", "template", "dlib"})


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


class LandmarkIndex:
    """Builds and reads the index cache of one source.

    Args:
        cache_file: the finished cache's path; its journal sits beside it as ``<name>.journal``.
        settings: the landmark settings; a cache made with others is rebuilt.
    """

    def __init__(self, cache_file: str | os.PathLike, settings: LandmarkSettings) -> None:
        self.cache_file = Path(cache_file)
        self.settings = settings
        self.cache = JournaledCache(self.cache_file, {"version": CACHE_VERSION, "settings": settings.fingerprint()})
        self.journal_file = self.cache.journal_file
        self._detector: FaceDetector | None = None
        self._dlib = None

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
        stats: dict[str, tuple[int, int] | None] = {}
        cached = self.cache.load()
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
            log.info("finding landmarks on %d image(s) (%d from cache)", len(todo), report.from_cache)
            with self.cache.journal() as append, Progress(len(todo), "landmarks") as bar, \
                    ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
                for start in range(0, len(todo), chunk_size):
                    chunk = todo[start : start + chunk_size]
                    results = self._process(chunk, pool, batch_size, device)
                    for (rec, _), entry in zip(chunk, results):
                        entries[rec.key] = entry
                    append([entry.to_json(rec.key, st) for (rec, st), entry in zip(chunk, results)])
                    report.computed += len(chunk)
                    bar.update(len(chunk))
                    if on_chunk is not None:
                        on_chunk(report.computed)
        if todo or stale or not self.cache_file.is_file():
            self.cache.finish([entries[r.key].to_json(r.key, stats[r.key]) for r in records if stats[r.key] is not None])
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
    return "index-" + hashlib.sha1(description.encode()).hexdigest()[:12] + ".json"
