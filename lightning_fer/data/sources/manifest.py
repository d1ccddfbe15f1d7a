"""A generic manifest CSV (path, label, and optional subject, split, face box and landmarks), and its writer."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning_fer.data.classes import (
    BASIC8,
    canonical_label,
    order_classes,
    resolve_class_names,
)
from lightning_fer.data.sources.base import (
    SPLIT_ALIASES,
    DataFormatError,
    FERSource,
    Record,
    SourceReport,
    _parse_box,
    parse_landmarks,
)
from lightning_fer.files import write_csv

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

    def cache_inputs(self) -> dict:
        if not self.path.is_file():
            raise FileNotFoundError(f"ManifestSource: {self.path} does not exist")
        return {"files": [str(self.path)], "options": {"class_names": self.class_names}}

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
    write_csv(path, cols, ([r.get(c, "") for c in cols] for r in rows))
