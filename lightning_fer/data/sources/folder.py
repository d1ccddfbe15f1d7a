"""Class-per-folder layouts (``root/<split>/<class>/*.png`` or ``root/<class>/*.png``), such as FER2013's."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning_fer.data.classes import (
    ALIASES,
    canonical_label,
    order_classes,
    resolve_class_names,
)
from lightning_fer.data.sources.base import (
    IMAGE_EXTENSIONS,
    SPLIT_ALIASES,
    SPLITS,
    DataFormatError,
    FERSource,
    Record,
    SourceReport,
    _key,
)

log = logging.getLogger(__name__)


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
            raise FileNotFoundError(f"FolderSource: {self.root} is not a folder (set --data.root to the data's folder)")
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
