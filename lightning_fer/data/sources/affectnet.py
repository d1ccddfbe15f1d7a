"""AffectNet's ``training.csv`` / ``validation.csv`` with its Manually_Annotated_Images folder."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Literal

from lightning_fer.data.classes import (
    AFFECTNET_NON_EXPRESSIONS,
    BASIC7,
    BASIC8,
)
from lightning_fer.data.sources.base import (
    DataFormatError,
    FERSource,
    Record,
    SourceReport,
    _parse_box,
    parse_landmarks_many,
)

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

log = logging.getLogger(__name__)


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

    def cache_inputs(self) -> dict:
        files = [self._find_csv(self.training_csv, "training", required=True)]
        val = self._find_csv(self.validation_csv, "validation", required=False)
        return {"files": [str(p) for p in files + ([val] if val else [])],
                "options": {"class_set": self.class_set, "images": str(self._images_dir())}}

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
        base = str(images)
        pending: list[tuple[int, str, str]] = []
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
                path = os.path.join(base, rel)  # a string join: pathlib costs more than the row's parse
                lm_text = row.get("facial_landmarks", "").strip()
                if lm_text:
                    pending.append((len(out), lm_text, where))
                out.append(
                    Record(
                        path=str(path),
                        key=rel,
                        label=code,
                        split=split,
                        box=_parse_box(row, where),
                        where=where,
                    )
                )
        if pending:  # landmarks in one conversion (their parse is most of a row's)
            at, texts, wheres = zip(*pending)
            for i, pts in zip(at, parse_landmarks_many(list(texts), list(wheres))):
                out[i].landmarks = pts
        return out


def _chain(*iterables):
    for it in iterables:
        yield from it
