"""Readers that turn a data source into :class:`Record` lists.

Every source yields the same records (path, label, subject, split, face box, landmarks), so that
the rest of the pipeline never knows whether faces came from AffectNet, an image folder, a
manifest CSV or the synthetic demo.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lightning_fer.data.classes import (
    AFFECTNET_NON_EXPRESSIONS,
    ALIASES,
    BASIC7,
    BASIC8,
    canonical_label,
    order_classes,
    resolve_class_names,
)

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


def parse_landmarks(text: str, where: str) -> np.ndarray:
    """Parse ``x1;y1;x2;y2;...`` into ``[K, 2]`` float32 (K = 5 or 68).

    Example:
        >>> parse_landmarks("1;2;3;4;5;6;7;8;9;10", "demo").shape
        (5, 2)
    """
    parts = [p for p in text.replace(",", ";").split(";") if p.strip() != ""]
    try:
        values = [float(p) for p in parts]
    except ValueError as err:
        raise DataFormatError(f"{where}: malformed landmarks {text[:60]!r}: {err}; expected numbers as 'x1;y1;x2;y2;...'") from None
    if len(values) not in (10, 136) or not all(math.isfinite(v) for v in values):
        raise DataFormatError(
            f"{where}: malformed landmarks: {len(values)} numbers, expected 10 (5 points) or 136 "
            f"(68 points) finite values as 'x1;y1;x2;y2;...'"
        )
    return np.asarray(values, dtype=np.float32).reshape(-1, 2)


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


# --------------------------------------------------------------------------------------------
# AffectNet
# --------------------------------------------------------------------------------------------

AFFECTNET_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)


class AffectNetSource(FERSource):
    """AffectNet's official ``training.csv`` and ``validation.csv`` (manually annotated part).

    The official validation set becomes the ``test`` split (it is the de-facto test set); the
    training set is the pool that folds are cut from. Rows with ``expression`` 8-10 (none,
    uncertain, no face) are never labels, and contempt (7) is dropped in the 7-class set; the
    report counts each. AffectNet has no identity column, so folds cannot be subject-disjoint.

    Args:
        root: the AffectNet folder. The CSVs are looked for in
            ``root/Manually_Annotated_file_lists/`` and then in ``root`` itself.
        class_set: 7 (the basic expressions) or 8 (adds contempt).
        training_csv: explicit path of the training CSV (overrides the search).
        validation_csv: explicit path of the validation CSV (overrides the search).
        images_dir: the folder ``subDirectory_filePath`` is relative to (default
            ``root/Manually_Annotated_Images``, else ``root``).

    Example:
        >>> src = AffectNetSource("/data/affectnet", class_set=7)  # doctest: +SKIP
        >>> records, class_names, report = src.load()  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        class_set: Literal[7, 8] = 7,
        training_csv: str | None = None,
        validation_csv: str | None = None,
        images_dir: str | None = None,
    ) -> None:
        if class_set not in (7, 8):
            raise ValueError(f"AffectNetSource: class_set must be 7 or 8, got {class_set!r}")
        self.root = Path(root).expanduser()
        self.class_set = class_set
        self.training_csv = training_csv
        self.validation_csv = validation_csv
        self.images_dir = images_dir

    def _find_csv(self, explicit: str | None, name: str, required: bool) -> Path | None:
        if explicit:
            p = Path(explicit).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"AffectNetSource: {name} CSV {p} does not exist")
            return p
        for p in (self.root / "Manually_Annotated_file_lists" / f"{name}.csv", self.root / f"{name}.csv"):
            if p.is_file():
                return p
        if required:
            raise FileNotFoundError(
                f"AffectNetSource: no {name}.csv under {self.root}/Manually_Annotated_file_lists/ or "
                f"{self.root}/; give its path with {name}_csv=..."
            )
        return None

    def _images_dir(self) -> Path:
        if self.images_dir:
            return Path(self.images_dir).expanduser()
        p = self.root / "Manually_Annotated_Images"
        return p if p.is_dir() else self.root

    def load(self) -> tuple[list[Record], list[str], SourceReport]:
        class_names = list(BASIC7 if self.class_set == 7 else BASIC8)
        report = SourceReport()
        records: list[Record] = []
        images = self._images_dir()
        train_csv = self._find_csv(self.training_csv, "training", required=True)
        val_csv = self._find_csv(self.validation_csv, "validation", required=False)
        for csv_path, split in ((train_csv, "train"), (val_csv, "test")):
            if csv_path is None:
                log.warning("AffectNetSource: no validation.csv found; there will be no official test split")
                continue
            records.extend(self._read(csv_path, split, images, report))
        report.kept = len(records)
        log.info("AffectNet %s-class: %s", self.class_set, report)
        return records, class_names, report

    def _read(self, csv_path: Path, split: str, images: Path, report: SourceReport) -> list[Record]:
        out: list[Record] = []
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            first = next(reader, None)
            if first is None:
                raise DataFormatError(f"{csv_path}: empty file; expected AffectNet columns {AFFECTNET_COLUMNS}")
            header = [c.strip() for c in first]
            if header and header[0] == "subDirectory_filePath":
                missing = [c for c in AFFECTNET_COLUMNS[:7] if c not in header]
                if missing:
                    raise DataFormatError(
                        f"{csv_path}: missing column(s) {missing}; AffectNet CSVs have {list(AFFECTNET_COLUMNS)}"
                    )
                cols = header
                rows = reader
                start = 2
            else:
                # validation.csv is often distributed without its header row.
                if len(header) < 7:
                    raise DataFormatError(
                        f"{csv_path}:1: {len(header)} columns and no header row; expected the AffectNet "
                        f"columns {list(AFFECTNET_COLUMNS)}"
                    )
                cols = list(AFFECTNET_COLUMNS[: len(header)])
                rows = _chain([first], reader)
                start = 1
            for lineno, raw in enumerate(rows, start=start):
                if not raw or all(not c.strip() for c in raw):
                    continue
                where = f"{csv_path}:{lineno}"
                if len(raw) < 7:
                    raise DataFormatError(f"{where}: {len(raw)} fields, expected at least 7 ({list(AFFECTNET_COLUMNS[:7])})")
                row = dict(zip(cols, raw))
                try:
                    code = int(float(row["expression"]))
                except ValueError:
                    raise DataFormatError(
                        f"{where}: expression {row['expression']!r} is not an integer 0-10"
                    ) from None
                if code in AFFECTNET_NON_EXPRESSIONS:
                    report.removed[f"expression {code} ({AFFECTNET_NON_EXPRESSIONS[code]}) is not an expression"] += 1
                    continue
                if code == 7 and self.class_set == 7:
                    report.removed["expression 7 (contempt) outside the 7-class set"] += 1
                    continue
                if not 0 <= code <= 7:
                    raise DataFormatError(
                        f"{where}: unknown expression label {code}; AffectNet uses 0-7 for expressions and 8-10 "
                        f"for none/uncertain/no-face. Fix or remove the row."
                    )
                rel = row["subDirectory_filePath"].strip()
                path = images / rel
                lm_text = row.get("facial_landmarks", "").strip()
                landmarks = parse_landmarks(lm_text, where) if lm_text else None
                out.append(
                    Record(
                        path=str(path),
                        key=rel,
                        label=code,
                        split=split,
                        box=_parse_box(row, where),
                        landmarks=landmarks,
                        where=where,
                    )
                )
        return out


def _chain(*iterables):
    for it in iterables:
        yield from it


# --------------------------------------------------------------------------------------------
# Class-per-folder layouts
# --------------------------------------------------------------------------------------------


class FolderSource(FERSource):
    """Class-per-folder layouts: ``root/<class>/*.jpg`` or ``root/<split>/<class>/*.jpg``.

    Folder names go through the expression aliases (``angry`` -> ``anger``, ``sadness`` -> ``sad``,
    ...). Split folders (``train``, ``val``/``validation``/``PublicTest``, ``test``/``PrivateTest``)
    are optional; ``split_map`` renames them, e.g. ``{"val": "test"}`` to use FER2013's
    PublicTest as the test set.

    Args:
        root: the data set folder.
        class_names: the classes and their order; default: those found, in AffectNet's order.
        split_map: renames split folders after alias mapping (``{"val": "test"}``).
        subject_from_name: take the subject from the file name's prefix up to this separator
            (for example ``"_"`` on CK+ names like ``S005_001_00000011.png``); default none.

    Example:
        >>> src = FolderSource("../shared/data/fer2013", split_map={"val": "test"})  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        class_names: list[str] | None = None,
        split_map: dict[str, str] | None = None,
        subject_from_name: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        self.class_names = resolve_class_names(class_names)
        self.split_map = dict(split_map or {})
        for k, v in self.split_map.items():
            if v not in SPLITS:
                raise ValueError(f"FolderSource: split_map[{k!r}] = {v!r}; must be one of {SPLITS}")
        self.subject_from_name = subject_from_name

    def _class_dirs(self, folder: Path) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            canon = canonical_label(d.name)
            if canon is None:
                raise DataFormatError(
                    f"{d}: folder name {d.name!r} is not an expression we know (known spellings: "
                    f"{sorted(k for k in ALIASES if len(k) > 2)}); rename it or remove it from {folder}"
                )
            if canon in found:
                raise DataFormatError(f"{folder}: folders {found[canon].name!r} and {d.name!r} both mean {canon!r}")
            found[canon] = d
        return found

    def load(self) -> tuple[list[Record], list[str], SourceReport]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"FolderSource: {self.root} is not a folder")
        subdirs = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        split_dirs = {p: SPLIT_ALIASES.get(p.name.lower()) for p in subdirs}
        if subdirs and all(split_dirs.values()):
            layout = {self.split_map.get(s, s): self._class_dirs(p) for p, s in sorted(split_dirs.items())}
        elif any(split_dirs.values()):
            mixed = sorted(p.name for p, s in split_dirs.items() if s is None)
            raise DataFormatError(
                f"{self.root}: mixes split folders with others ({mixed}); use either <split>/<class>/ or <class>/"
            )
        else:
            layout = {None: self._class_dirs(self.root)}
        present = set().union(*[set(d) for d in layout.values()]) if layout else set()
        class_names = self.class_names or order_classes(present)
        index = {c: i for i, c in enumerate(class_names)}
        report = SourceReport()
        records: list[Record] = []
        for split, classes in layout.items():
            for cname, cdir in classes.items():
                if cname not in index:
                    raise DataFormatError(f"{cdir}: class {cname!r} is not in class_names {class_names}")
                for dirpath, _, files in os.walk(cdir):
                    for fname in sorted(files):
                        if fname.startswith("."):
                            continue
                        if not fname.lower().endswith(IMAGE_EXTENSIONS):
                            report.removed[f"not an image extension ({Path(fname).suffix or 'none'})"] += 1
                            continue
                        path = Path(dirpath) / fname
                        subject = fname.split(self.subject_from_name)[0] if self.subject_from_name else None
                        records.append(
                            Record(
                                path=str(path),
                                key=_key(path, self.root),
                                label=index[cname],
                                subject=subject,
                                split=split,
                                where=str(path),
                            )
                        )
        if not records:
            raise DataFormatError(f"{self.root}: no images found in class folders")
        report.kept = len(records)
        log.info("FolderSource %s: %s", self.root, report)
        return records, class_names, report


# --------------------------------------------------------------------------------------------
# Generic manifest CSV
# --------------------------------------------------------------------------------------------

MANIFEST_REQUIRED = ("path", "label")
MANIFEST_OPTIONAL = ("subject", "split", "face_x", "face_y", "face_width", "face_height", "landmarks")


class ManifestSource(FERSource):
    """A generic CSV: ``path,label`` and optionally ``subject,split,face_x,face_y,face_width,
    face_height,landmarks`` (landmarks as ``x1;y1;x2;y2;...``); paths are relative to the CSV's
    folder.

    ``label`` is an expression name (aliases allowed) or, when ``class_names`` is given, also an
    integer index into it.

    Args:
        path: the manifest CSV.
        class_names: the classes and their order; default: those found, in AffectNet's order.

    Example:
        >>> src = ManifestSource("faces/manifest.csv")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, class_names: list[str] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.root = self.path.parent
        self.class_names = resolve_class_names(class_names)

    def describe(self) -> str:
        return f"ManifestSource({self.path})"

    def load(self) -> tuple[list[Record], list[str], SourceReport]:
        if not self.path.is_file():
            raise FileNotFoundError(f"ManifestSource: {self.path} does not exist")
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in MANIFEST_REQUIRED if c not in fields]
            if missing:
                raise DataFormatError(
                    f"{self.path}: missing column(s) {missing}; a manifest needs {list(MANIFEST_REQUIRED)} and may "
                    f"have {list(MANIFEST_OPTIONAL)}"
                )
            reader.fieldnames = fields
            rows = [(lineno, row) for lineno, row in enumerate(reader, start=2)]
        labels: list[str] = []
        for lineno, row in rows:
            value = (row.get("label") or "").strip()
            canon = canonical_label(value)
            if canon is None and self.class_names is not None and value.lstrip("-").isdigit():
                i = int(value)
                if 0 <= i < len(self.class_names):
                    canon = self.class_names[i]
            if canon is None or (self.class_names is not None and canon not in self.class_names):
                allowed = self.class_names or list(BASIC8)
                raise DataFormatError(
                    f"{self.path}:{lineno}: unknown label {value!r}; expected one of {allowed}"
                    + (" or an index into class_names" if self.class_names else "")
                )
            labels.append(canon)
        class_names = self.class_names or order_classes(set(labels))
        index = {c: i for i, c in enumerate(class_names)}
        records = []
        for (lineno, row), canon in zip(rows, labels):
            where = f"{self.path}:{lineno}"
            rel = (row.get("path") or "").strip()
            if not rel:
                raise DataFormatError(f"{where}: empty path")
            p = Path(rel)
            path = p if p.is_absolute() else self.root / p
            split = (row.get("split") or "").strip().lower() or None
            if split is not None:
                mapped = SPLIT_ALIASES.get(split)
                if mapped is None:
                    raise DataFormatError(f"{where}: split {split!r} is not one of {sorted(SPLIT_ALIASES)}")
                split = mapped
            lm = (row.get("landmarks") or "").strip()
            records.append(
                Record(
                    path=str(path),
                    key=rel,
                    label=index[canon],
                    subject=(row.get("subject") or "").strip() or None,
                    split=split,
                    box=_parse_box(row, where),
                    landmarks=parse_landmarks(lm, where) if lm else None,
                    where=where,
                )
            )
        report = SourceReport(kept=len(records))
        return records, class_names, report


def write_manifest(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write a manifest CSV atomically (temporary name, then rename)."""
    path = Path(path)
    cols = list(MANIFEST_REQUIRED) + [c for c in MANIFEST_OPTIONAL if any(c in r for r in rows)]
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def format_landmarks(points: np.ndarray) -> str:
    return ";".join(f"{v:.2f}" for v in np.asarray(points, dtype=np.float64).reshape(-1))
