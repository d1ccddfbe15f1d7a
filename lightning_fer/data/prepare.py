"""A source made ready once: records read, every image checked and its landmarks found (cached),
bad images listed, duplicates resolved, and the records cut into train / val / test."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_fer.data.dataset import BadImagesError
from lightning_fer.data.detection import LandmarkSettings
from lightning_fer.data.duplicates import DuplicatePolicy, DuplicateReport, file_digests, resolve_duplicates
from lightning_fer.data.folds import bootstrap_resample, load_or_make_folds, stratified_subset
from lightning_fer.data.landmarks import IndexReport, IndexTable, LandmarkIndex, source_cache_name
from lightning_fer.data.records import SPLIT_CODES, RecordTable, load_records
from lightning_fer.data.sources import FERSource, SourceReport
from lightning_fer.files import home, write_csv

log = logging.getLogger(__name__)


def _writable(folder: Path) -> bool:
    """Writable for this process, and not marked read-only (root may write anywhere; a folder
    without any write bit, such as a shared read-only data set, is still left alone)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def default_cache_dir(root: Path) -> Path:
    """``.lightning_fer`` next to the data when writable, else ``~/.cache/lightning_fer/cache-<hash>``
    (or under ``$LIGHTNING_FER_HOME``)."""
    near = root / ".lightning_fer"
    if near.is_dir() and _writable(near) or _writable(root):
        return near
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return home() / f"cache-{digest}"


@dataclass(frozen=True)
class RecordSettings:
    """Which records are read and where what is learnt of them is kept: the data module's
    ``records`` option group (``--data.records.duplicates=drop``).

    Args:
        split_map: for ``folder``: renames split folders, e.g. ``{val: test}`` to test on
            FER2013's PublicTest folder.
        duplicates: ``keep`` byte-identical images, or ``drop`` copies (one kept in the most
            protected split; see :mod:`lightning_fer.data.duplicates`), listed in ``duplicates.csv``.
        skip_bad_images: leave unreadable images out (counted, listed in ``skipped.csv``).
        cache_dir: folder for the caches, folds and lists (default: ``.lightning_fer`` next to
            the data when writable, else ``~/.cache/lightning_fer/<hash>``).

    Example:
        >>> RecordSettings(duplicates="remove")
        Traceback (most recent call last):
        ...
        ValueError: records.duplicates must be 'keep' or 'drop', got 'remove'
    """

    split_map: dict[str, str] | None = None
    duplicates: DuplicatePolicy = "keep"
    skip_bad_images: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.duplicates not in ("keep", "drop"):
            raise ValueError(f"records.duplicates must be 'keep' or 'drop', got {self.duplicates!r}")


class PreparedSource:
    """A source's records, read once (a :class:`~lightning_fer.data.records.RecordTable`, cached
    where the source names its files), and what the data module knows of them: the landmark index
    (an :class:`~lightning_fer.data.landmarks.IndexTable`, built once per process, cached on
    disk), which records are usable, and the splits.

    Args:
        source: the reader.
        settings: how landmarks are found.
        cache_dir: the cache folder (default :func:`default_cache_dir`).
        duplicates: ``keep`` or ``drop`` byte-identical copies (see :mod:`~lightning_fer.data.duplicates`).
        skip_bad_images: leave unreadable images out (listed) instead of raising :class:`BadImagesError`.
        num_workers, detect_batch_size, detect_device: how the index is built.
    """

    def __init__(self, source: FERSource, settings: LandmarkSettings, cache_dir: str | None = None,
                 duplicates: DuplicatePolicy = "keep", skip_bad_images: bool = False, num_workers: int = 2,
                 detect_batch_size: int = 32, detect_device: str | None = None,
                 whole_picture_limit: int | None = None) -> None:
        self.source = source
        self.whole_picture_limit = whole_picture_limit
        self.settings = settings
        self._cache_dir = cache_dir
        self.duplicates = duplicates
        self.skip_bad_images = skip_bad_images
        self.num_workers = num_workers
        self.detect_batch_size = detect_batch_size
        self.detect_device = detect_device
        self._loaded: tuple[RecordTable, list[str], SourceReport] | None = None
        self._indexed: tuple[RecordTable, IndexTable] | None = None
        self._drop: np.ndarray | None = None
        self.index_report: IndexReport | None = None
        self.duplicate_report: DuplicateReport | None = None

    @property
    def cache_dir(self) -> Path:
        return Path(self._cache_dir).expanduser() if self._cache_dir else default_cache_dir(self.source.root)

    def load(self) -> tuple[RecordTable, list[str], SourceReport]:
        """The source's records, class names and report, read once per process: from the record
        cache where the source's files are unchanged (AffectNet's CSVs are large)."""
        if self._loaded is None:
            name = source_cache_name(self.source.describe()).replace("index-", "records-")
            self._loaded = load_records(self.source, self.cache_dir, name)
        return self._loaded

    @property
    def records(self) -> RecordTable | list:
        return self._loaded[0] if self._loaded else []

    def folds_path(self, num_folds: int, seed: int) -> Path:
        """Where the folds of this source (with this duplicates policy) are saved: in the cache folder."""
        name = source_cache_name(self.source.describe()).replace("index-", "folds-").removesuffix(".col")
        dedup = "-dedup" if self.duplicates == "drop" else ""
        return self.cache_dir / f"{name}-k{num_folds}-s{seed}{dedup}.json"

    def index(self, verify: bool = True) -> tuple[RecordTable, IndexTable]:
        """The records and their landmark index, from the cache (built where needed), once per
        process. ``verify=False`` trusts the index's own file sizes and times (no ``stat`` of
        every image): another process on this machine verified them, or the user said so."""
        if self._indexed is not None:
            return self._indexed
        records = self.load()[0]
        self._detect_large_pictures(records)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        index = self._landmarks = LandmarkIndex(self.cache_dir / source_cache_name(self.source.describe()),
                                                self.settings)
        table, self.index_report = index.build(records, num_workers=max(1, self.num_workers),
                                               batch_size=self.detect_batch_size, device=self.detect_device,
                                               verify=verify)
        log.info("%s: %s", self.source.describe(), self.index_report)
        if not verify:
            log.info("landmark index read as prepare_data() left it, without a check of each file (trusted, or "
                     "checked on this machine by local rank 0)")
        self._check_bad(records, table)
        self._indexed = (records, table)
        return self._indexed

    def _detect_large_pictures(self, records: RecordTable, sample: int = 32) -> None:
        """``landmarks: template`` takes each whole picture as the face. Where the pictures carry no
        annotated box and are much larger than the model's input (``whole_picture_limit``: 3x the
        image size; the median of the first ``sample`` files' sizes, read from their headers) they
        are photos rather than face crops: faces are detected with MTCNN instead, said in a warning
        (``face_box: image`` keeps whole pictures). The same decision on every rank: the same files."""
        import dataclasses

        from PIL import Image

        limit = self.whole_picture_limit
        if self.settings.mode != "template" or not limit or not len(records):
            return
        if not np.isnan(np.asarray(records.boxes, np.float32)[:, 0]).all():
            return
        sizes = []
        for i in range(min(sample, len(records))):
            try:
                with Image.open(records.path(i)) as im:
                    sizes.append(max(im.size))
            except Exception:  # noqa: BLE001 - an unreadable file is reported by the index itself
                continue
        if sizes and float(np.median(sizes)) > limit:
            log.warning("%s: the pictures are %d px (median of %d), over 3x the model's input, with no annotated face "
                        "box: faces are detected with MTCNN instead of taking each whole picture as the face "
                        "(landmarks: template); set --data.face_box image to keep whole pictures",
                        self.source.describe(), int(np.median(sizes)), len(sizes))
            self.settings = dataclasses.replace(self.settings, mode="mtcnn")

    def _check_bad(self, records: RecordTable, index: IndexTable) -> None:
        bad = [(records[int(i)], index.reasons[int(i)], index.kind_of(int(i))) for i in np.flatnonzero(~np.asarray(index.ok))]
        listing = self.cache_dir / "skipped.csv"
        write_csv(listing, ["path", "reason", "where"], [(r.path, why, r.where) for r, why, _ in bad])
        if not bad:
            return
        no_face = [(r, why) for r, why, kind in bad if kind == "no_face"]
        unreadable = [(r, why) for r, why, kind in bad if kind != "no_face"]
        if unreadable and not self.skip_bad_images:
            lines = "\n".join(f"  {r.path}: {why}" for r, why in unreadable)
            raise BadImagesError(
                f"{len(unreadable)} image(s) cannot be used (also listed in {listing}):\n{lines}\n"
                "fix or remove them, or set records.skip_bad_images: true (--data.records.skip_bad_images=true) to leave "
                "them out"
            )
        log.warning("leaving out %d unreadable image(s) and %d without a face; list in %s",
                    len(unreadable), len(no_face), listing)

    def usable(self) -> np.ndarray:
        """Records that can be used: readable, with landmarks, and not a dropped duplicate."""
        records, index = self.index()
        ok = np.array(index.ok, dtype=bool)
        if self.duplicates == "keep":
            return ok
        if self._drop is None:
            full = self._digests(records, index, ok)
            listing = self.cache_dir / "duplicates.csv"
            self._drop, self.duplicate_report = resolve_duplicates(records, ok, full, self.load()[1], listing)
            log.warning("%s: %s; list in %s", self.source.describe(), self.duplicate_report, listing)
        return ok & ~self._drop

    def _digests(self, records: RecordTable, index: IndexTable, ok: np.ndarray) -> list[str | None]:
        """Every usable file's MD5 (``None`` for the others): from the index where it has them,
        else read now and kept in the index (a warm ``setup()`` reads no file)."""
        rows = np.flatnonzero(ok)
        hashed = np.asarray(index.hashed)[rows]
        hexes = np.asarray(index.md5)[rows].tobytes().hex()
        full: list[str | None] = [None] * len(records)
        for j, i in enumerate(rows.tolist()):
            full[i] = hexes[32 * j: 32 * j + 32]
        lacking = rows[~hashed]
        if len(lacking):
            digests = file_digests([records.path(i) for i in lacking], max(2, self.num_workers))
            for i, d in zip(lacking.tolist(), digests):
                full[i] = d
            try:
                self._indexed = (records, self._landmarks.store_digests(index, records, lacking, digests))
            except OSError as err:
                log.warning("cannot keep the files' digests in %s (%s); they are read again next time",
                            self._landmarks.cache_file, err)
        return full

    def folds(self, path: Path, num_folds: int, seed: int) -> np.ndarray:
        """The fold of every usable record outside the official test split (saved at ``path``)."""
        records = self.index()[0]
        pool = np.flatnonzero(self.usable() & (records.splits != SPLIT_CODES.index("test")))
        subjects = records.subject_list(pool) if (records.subjects[pool] >= 0).any() else [None] * len(pool)
        return load_or_make_folds(path, records.keys.take(pool), records.labels[pool], subjects, num_folds, seed)

    def splits(self, eval_split: str, fold: int | None, folds_path: Path, num_folds: int, seed: int,
               train_fraction: float = 1.0, bootstrap: int | None = None) -> dict[str, np.ndarray]:
        """Record indices of ``train``, ``val`` and ``test`` as the data module's options say."""
        records = self.index()[0]
        ok = self.usable()
        split = records.split_names()
        idx = np.arange(len(records))
        test = idx[ok & (split == "test")]
        if eval_split == "all":
            train, val = idx[:0], idx[ok]
            test = val
            log.info("eval_split=all: evaluating on all %d usable images of %s", len(val), self.source.describe())
        elif fold is not None:
            if np.any(ok & (split == "val")):
                log.info("fold=%s: the official val split joins the fold pool", fold)
            pool = idx[ok & (split != "test")]
            folds = self.folds(folds_path, num_folds, seed)
            train, val = pool[folds != fold], pool[folds == fold]
        else:
            train, val = idx[ok & np.isin(split, ["train", ""])], idx[ok & (split == "val")]
            if len(val) == 0:
                log.warning("%s: fold=None and no official 'val' split: training on every training image, with no "
                            "validation (set fold to a number to hold a fold out)", self.source.describe())
        if len(test) == 0:
            log.warning("no official test split: the test set is the validation set")
            test = val
        if train_fraction < 1.0 and len(train):
            train = stratified_subset(train, np.asarray(records.labels)[train], train_fraction, seed)
        if bootstrap is not None:
            train = bootstrap_resample(train, bootstrap)
        return {"train": train, "val": val, "test": test}
