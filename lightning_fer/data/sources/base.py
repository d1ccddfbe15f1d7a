"""What every reader yields: :class:`Record`, the :class:`FERSource` base class, and the parsers of landmark and box columns they share."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm")


SPLITS = ("train", "val", "test")


#: Split-folder spellings, mapped to ``train``, ``val`` or ``test``.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "testing": "test",
    "privatetest": "test",
}


@dataclass
class Record:
    """One face image and what is known about it.

    Attributes:
        path: absolute path of the image file.
        key: a stable name for caches and fold files (the path relative to the source root).
        label: class index into the source's class names.
        subject: identity of the person, when known (for subject-disjoint folds).
        split: ``train``, ``val``, ``test`` or ``None`` when the source has no official split.
        box: face box ``(x, y, width, height)`` in image pixels, when annotated.
        landmarks: ``[K, 2]`` float32 points (K = 68 or 5) in image pixels, when annotated.
        where: where the record came from (``file:row``), for error messages.
    """

    path: str
    key: str
    label: int
    subject: str | None = None
    split: str | None = None
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    where: str = ""


@dataclass
class SourceReport:
    """What a reader kept and what each rule removed."""

    kept: int = 0
    removed: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        parts = [f"kept {self.kept}"] + [f"removed {n} ({why})" for why, n in sorted(self.removed.items())]
        return ", ".join(parts)


class DataFormatError(ValueError):
    """A source file is malformed; the message names the file, row and what to do."""


class FERSource:
    """Base class of the sources: subclasses implement :meth:`load`.

    A source knows its ``root`` (where caches go by default) and returns records whose labels
    index ``class_names``.
    """

    root: Path

    def load(self) -> tuple[list[Record], list[str], SourceReport]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__}({self.root})"

    def cache_inputs(self) -> dict | None:
        """What :meth:`load` reads, for the record cache: ``{"files": [paths], "options": {...}}``.
        While those files keep their sizes and modification times and the options are the same,
        the records are read from the cache (one memory-mapped file) instead of from the source.
        ``None`` (the default, and folder sources, whose input is a directory tree): read every time."""
        return None


def parse_landmarks(text: str, where: str) -> np.ndarray:
    """Parse ``x1;y1;x2;y2;...`` into ``[K, 2]`` float32 (K = 5 or 68).

    Example:
        >>> parse_landmarks("1;2;3;4;5;6;7;8;9;10", "demo").shape
        (5, 2)
    """
    parts = text.replace(",", ";").split(";")
    if parts and parts[-1].strip() == "":
        parts.pop()  # a trailing separator
    try:
        values = np.array(parts, dtype=np.float32)
    except ValueError as err:
        raise DataFormatError(f"{where}: malformed landmarks {text[:60]!r}: {err}; expected numbers as 'x1;y1;x2;y2;...'") from None
    if len(values) not in (10, 136) or not np.isfinite(values).all():
        raise DataFormatError(
            f"{where}: malformed landmarks: {len(values)} numbers, expected 10 (5 points) or 136 "
            f"(68 points) finite values as 'x1;y1;x2;y2;...'"
        )
    return values.reshape(-1, 2)


def parse_landmarks_many(texts: list[str], wheres: list[str]) -> list[np.ndarray]:
    """:func:`parse_landmarks` of many rows at once (one NumPy conversion for every row of the
    same length: AffectNet's 136 numbers a row cost a third as much); a malformed row raises
    the same one-line error, naming its ``where``.

    Example:
        >>> [p.shape for p in parse_landmarks_many(["1;2;3;4;5;6;7;8;9;10"] * 2, ["a", "b"])]
        [(5, 2), (5, 2)]
    """
    out: list[np.ndarray | None] = [None] * len(texts)
    by_count: dict[int, list[int]] = {}
    for i, t in enumerate(texts):
        by_count.setdefault(t.count(";") if "," not in t else -1, []).append(i)
    for count, rows in by_count.items():
        if count in (9, 135):
            try:
                values = np.array(";".join(texts[i] for i in rows).split(";"), dtype=np.float32)
            except ValueError:
                values = None
            if values is not None and np.isfinite(values).all():
                for i, pts in zip(rows, values.reshape(len(rows), -1, 2)):
                    out[i] = pts
                continue
        for i in rows:  # other lengths, commas, or a bad number somewhere: row by row, for the error
            out[i] = parse_landmarks(texts[i], wheres[i])
    return out  # type: ignore[return-value]


def _parse_box(row: dict, where: str) -> tuple[float, float, float, float] | None:
    cols = ("face_x", "face_y", "face_width", "face_height")
    vals = [row.get(c) for c in cols]
    if all(v in (None, "") for v in vals):
        return None
    try:
        x, y, w, h = (float(v) for v in vals)
    except (TypeError, ValueError):
        raise DataFormatError(f"{where}: face box {dict(zip(cols, vals))} is not four numbers") from None
    if not (w > 0 and h > 0):
        raise DataFormatError(f"{where}: face box has width {w} and height {h}; both must be positive")
    return (x, y, w, h)


def _key(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def format_landmarks(points: np.ndarray) -> str:
    return ";".join(f"{v:.2f}" for v in np.asarray(points, dtype=np.float64).reshape(-1))
