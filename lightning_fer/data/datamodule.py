"""``FERDataModule``: any source -> checked images with landmarks -> folds -> region views."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from lightning_fer.data.augment import AffineAugment, train_augmentation
from lightning_fer.data.dataset import BadImagesError, FERDataset, SourceName, build_source, match_classes
from lightning_fer.data.detection import LandmarkMode, LandmarkSettings, NoFacePolicy
from lightning_fer.data.duplicates import DuplicatePolicy, DuplicateReport, file_digests, resolve_duplicates
from lightning_fer.data.folds import load_or_make_folds
from lightning_fer.data.geometry import FaceBox, face_geometry, view_masks
from lightning_fer.data.landmarks import IndexEntry, LandmarkIndex, source_cache_name
from lightning_fer.data.photos import DEFAULT_OUTPUT, PhotoFacesDataset, PhotoOptions, scan_photos
from lightning_fer.data.sources import FERSource, Record
from lightning_fer.data.transforms import FaceTransform, check_views
from lightning_fer.files import write_csv

log = logging.getLogger(__name__)



def _writable(folder: Path) -> bool:
    """Writable for this process, and not marked read-only (root may write anywhere; a folder
    without any write bit, such as a shared read-only data set, is still left alone)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


class FERDataModule(L.LightningDataModule):
    """Facial expression data from any source, with landmarks, folds and region views.

    ``prepare_data()`` checks every image once, finds landmarks and caches both; ``setup()``
    cuts the folds (saved to a file, so every backbone and the stacking step see the same
    split) and builds the datasets. Batches are ``{"image": [B, 3, S, S], "views":
    [B, V, 3, S, S], "label": [B], "index": [B]}``.

    Splits: records with the official ``test`` split form the test set (AffectNet's validation
    set, the demo's held-out subjects); with ``fold`` set, the others are cut into
    ``num_folds`` stratified folds (subject-disjoint where subjects are known) and fold
    ``fold`` validates; with ``fold=None`` the official ``train`` and ``val`` splits are used.

    Args:
        source: ``synthetic``, ``affectnet``, ``folder``, ``manifest`` (with ``root``), or a
            :class:`~lightning_fer.data.sources.FERSource` given by ``class_path``.
        root: the data set folder (the manifest CSV for ``manifest``); for ``synthetic``, where
            the demo faces are written.
        split_map: for ``folder``: renames split folders, e.g. ``{val: test}`` to test on
            FER2013's PublicTest folder.
        views: regions each item yields, from ``face``, ``left_eye``, ``right_eye``, ``nose``,
            ``mouth``, ``rest``.
        image_size: side of each view in pixels.
        batch_size: batch size per device.
        num_workers: DataLoader workers (and decoding threads in ``prepare_data()``).
        fold: the validation fold, or ``None`` for the official splits.
        num_folds: number of folds.
        seed: seed of the fold assignment and of the balanced sampler.
        folds_file: where the folds are saved (default: in the cache folder).
        landmarks: ``auto`` (annotation, else MTCNN), ``annotation``, ``mtcnn`` or ``template``.
        no_face: where MTCNN finds no face: ``template``, ``skip`` or ``error``. The template's
            parts on such a face are a guess: its part views (and ``rest``) are marked missing
            in the batch's ``view_mask``.
        face_box: what the ``face`` view shows. ``auto``: the annotated box, else MTCNN's box,
            else (template landmarks) the whole image. ``image``: the whole image, for data sets
            of pre-cropped faces (FER2013, CK+48, RAF-DB aligned, AffectNet's crops), where
            MTCNN's box is larger than the crop and shrinks the face inside padding; the parts
            still come from the landmarks. ``landmarks``: MTCNN's box, or one derived from the
            landmarks. ``annotation``: the annotated box (an error lists records without one).
        min_view_inside: a part whose box (as the landmarks place it) lies less than this share
            inside the image is marked missing for that face.
        skip_bad_images: leave unreadable images out (counted, listed in ``skipped.csv``)
            instead of failing before training.
        cache_dir: folder for the landmark cache, folds and lists (default: ``.lightning_fer``
            next to the data when writable, else ``~/.cache/lightning_fer/<hash>``). When
            several machines train, put it on storage they all see.
        balanced_sampler: draw training samples with probability inverse to their class size.
        augment: augment training images.
        augmentation: ``affine`` (default): flip, rotation, scale, shift, brightness, contrast
            and grey drawn per item and applied as one ``cv2.warpAffine`` per view
            (:class:`~lightning_fer.data.transforms.AffineAugment`); ``albumentations``: the same
            distribution through albumentations on the face canvas
            (:func:`~lightning_fer.data.transforms.train_augmentation`), ~4x slower per face.
        detect_batch_size: MTCNN batch size in ``prepare_data()``.
        detect_device: device for MTCNN (default: CUDA when available).
        predict_path: an image or a folder of photos: ``predict`` then finds every face in them
            (MTCNN) instead of using the test split.
        predict_output: where ``predict`` writes a row per face (``.csv`` or ``.json``; default
            ``runs/predict/predictions.csv`` when ``predict_path`` is set).
        annotate_dir: also write copies of the photos with boxes and labels there.
        min_face_prob: MTCNN probability a face needs to count, in ``predict_path`` photos.
        duplicates: ``keep`` byte-identical images as they are, or ``drop`` copies: one copy is
            kept in the most protected split (test, then val, then train), groups with
            conflicting labels are dropped whole; every decision is listed in
            ``duplicates.csv`` in the cache folder (see :mod:`lightning_fer.data.duplicates`).
        train_fraction: train on a stratified, seeded subset of this fraction of the training
            split (validation and test splits stay whole), to fit a time budget.
        eval_split: ``official``: validate on the validation split (a fold, or ``val``) and test
            on ``test``. ``all``: validate, test and predict on every usable image of the
            source, whatever its splits (a manifest without a split column, another data set
            tested with a model trained elsewhere); folds and ``train_fraction`` are not used,
            and ``fit`` is refused.

    Example:
        >>> import tempfile
        >>> from lightning_fer.data.sources import SyntheticSource
        >>> src = SyntheticSource(tempfile.mkdtemp(), num_subjects=6, images_per_class=2, test_subjects=1, image_size=64)
        >>> dm = FERDataModule(src, views=["face", "mouth"], image_size=32, batch_size=4, num_workers=0)
        >>> dm.prepare_data(); dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["views"].shape), dm.num_classes
        ((4, 2, 3, 32, 32), 7)
    """

    def __init__(
        self,
        source: SourceName | FERSource = "synthetic",
        root: str | None = None,
        split_map: dict[str, str] | None = None,
        views: list[str] = ["face"],  # noqa: B006 (a list so that LightningCLI shows it as one)
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        fold: int | None = 0,
        num_folds: int = 5,
        seed: int = 0,
        folds_file: str | None = None,
        landmarks: LandmarkMode = "auto",
        no_face: NoFacePolicy = "template",
        face_box: FaceBox = "auto",
        min_view_inside: float = 0.5,
        skip_bad_images: bool = False,
        cache_dir: str | None = None,
        balanced_sampler: bool = False,
        augment: bool = True,
        augmentation: Literal["affine", "albumentations"] = "affine",
        detect_batch_size: int = 32,
        detect_device: str | None = None,
        predict_path: str | None = None,
        predict_output: str | None = None,
        annotate_dir: str | None = None,
        min_face_prob: float = 0.9,
        duplicates: DuplicatePolicy = "keep",
        train_fraction: float = 1.0,
        eval_split: Literal["official", "all"] = "official",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["source"] if isinstance(source, FERSource) else None)
        self.source = build_source(source, root, split_map)
        self.views = check_views(views)
        if fold is not None and not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in [0, {num_folds}) or None, got {fold}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.fold = fold
        self.num_folds = num_folds
        self.seed = seed
        self.folds_file = folds_file
        self.landmark_settings = LandmarkSettings(mode=landmarks, no_face=no_face)
        if face_box not in ("auto", "image", "landmarks", "annotation"):
            raise ValueError(f"face_box must be 'auto', 'image', 'landmarks' or 'annotation', got {face_box!r}")
        if not 0.0 <= min_view_inside <= 1.0:
            raise ValueError(f"min_view_inside must be in [0, 1], got {min_view_inside}")
        self.face_box = face_box
        self.min_view_inside = min_view_inside
        self.skip_bad_images = skip_bad_images
        self._cache_dir = cache_dir
        self.balanced_sampler = balanced_sampler
        self.augment = augment
        if augmentation not in ("affine", "albumentations"):
            raise ValueError(f"augmentation must be 'affine' or 'albumentations', got {augmentation!r}")
        self.augmentation = augmentation
        self.detect_batch_size = detect_batch_size
        self.detect_device = detect_device
        #: photos to predict on (``None``: predict on the test split); the writer reads its outputs.
        self.photos = PhotoOptions(predict_path, predict_output or DEFAULT_OUTPUT, annotate_dir, min_face_prob) \
            if predict_path else None
        if duplicates not in ("keep", "drop"):
            raise ValueError(f"duplicates must be 'keep' or 'drop', got {duplicates!r}")
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.duplicates = duplicates
        self.train_fraction = train_fraction
        if eval_split not in ("official", "all"):
            raise ValueError(f"eval_split must be 'official' or 'all', got {eval_split!r}")
        self.eval_split = eval_split
        self.class_match: dict[str, dict] = {}
        self.duplicate_report: DuplicateReport | None = None
        self._drop: np.ndarray | None = None
        self.photo_scan = None
        self._indexed: tuple[list[Record], dict[str, IndexEntry]] | None = None
        self.records: list[Record] = []
        self._source_loaded = None
        self.splits: dict[str, np.ndarray] = {}
        self.datasets: dict[str, FERDataset] = {}
        self.index_report = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        if self._cache_dir:
            return Path(self._cache_dir).expanduser()
        near = self.source.root / ".lightning_fer"
        if near.is_dir() and _writable(near) or _writable(self.source.root):
            return near
        digest = hashlib.sha1(str(self.source.root.resolve()).encode()).hexdigest()[:12]
        base = os.environ.get("LIGHTNING_FER_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "lightning_fer")
        return Path(base) / f"cache-{digest}"

    def _load_source(self):
        """The source's records, class names and report, read once per data module (the CLI's
        links, ``prepare_data()`` and ``setup()`` all need them; AffectNet's CSVs are large)."""
        if self._source_loaded is None:
            self._source_loaded = self.source.load()
            self.records = self._source_loaded[0]
        return self._source_loaded

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (reads the source on first use)."""
        return self._load_source()[1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _folds_path(self) -> Path:
        if self.folds_file:
            return Path(self.folds_file).expanduser()
        name = source_cache_name(self.source.describe()).replace("index-", "folds-").removesuffix(".json")
        dedup = "-dedup" if self.duplicates == "drop" else ""
        return self.cache_dir / f"{name}-k{self.num_folds}-s{self.seed}{dedup}.json"

    # -- preparation -------------------------------------------------------------------------
    def _index(self) -> tuple[list[Record], dict[str, IndexEntry]]:
        """Every record's index entry, from the cache (built where needed); read once per data
        module, as ``prepare_data()`` and each ``setup()`` need it and its report is said once."""
        if self._indexed is not None:
            return self._indexed
        records, _, _ = self._load_source()
        cache = self.cache_dir
        cache.mkdir(parents=True, exist_ok=True)
        index = LandmarkIndex(cache / source_cache_name(self.source.describe()), self.landmark_settings)
        entries, self.index_report = index.build(
            records,
            num_workers=max(1, self.num_workers),
            batch_size=self.detect_batch_size,
            device=self.detect_device,
        )
        log.info("%s: %s", self.source.describe(), self.index_report)
        self._check_bad(records, entries)
        self._indexed = (records, entries)
        return records, entries

    def _check_bad(self, records: list[Record], entries: dict[str, IndexEntry]) -> None:
        bad = [(r, entries[r.key].reason) for r in records if not entries[r.key].ok]
        listing = self.cache_dir / "skipped.csv"
        write_csv(listing, ["path", "reason", "where"], [(r.path, why, r.where) for r, why in bad])
        if not bad:
            return
        no_face = [b for b in bad if entries[b[0].key].kind == "no_face"]
        unreadable = [b for b in bad if entries[b[0].key].kind != "no_face"]
        if unreadable and not self.skip_bad_images:
            lines = "\n".join(f"  {r.path}: {why}" for r, why in unreadable)
            raise BadImagesError(
                f"{len(unreadable)} image(s) cannot be used (also listed in {listing}):\n{lines}\n"
                "fix or remove them, or set skip_bad_images=True (--data.skip_bad_images=true) to leave them out"
            )
        log.warning(
            "leaving out %d unreadable image(s) and %d without a face; list in %s", len(unreadable), len(no_face), listing
        )

    def _usable(self, records: list[Record], entries: dict[str, IndexEntry]) -> np.ndarray:
        """Records that can be used: readable, with landmarks, and not a dropped duplicate."""
        ok = np.array([entries[r.key].ok for r in records], dtype=bool)
        if self.duplicates == "keep":
            return ok
        if self._drop is None:
            digests = file_digests([r.path for r, u in zip(records, ok) if u], max(2, self.num_workers))
            it = iter(digests)
            full = [next(it) if u else None for u in ok]
            self._drop, self.duplicate_report = resolve_duplicates(
                records, ok, full, self.class_names, self.cache_dir / "duplicates.csv"
            )
            log.warning("%s: %s; list in %s", self.source.describe(), self.duplicate_report,
                        self.cache_dir / "duplicates.csv")
        return ok & ~self._drop

    def prepare_data(self) -> None:
        """Check every image, find landmarks (cached), and write the folds file."""
        if self.photos and self.trainer is not None and self.trainer.predicting:
            return  # photos are scanned in setup("predict"); the training data need not be here
        records, entries = self._index()
        if self.fold is not None and self.eval_split == "official":
            keys, labels, groups = self._pool(records, entries)
            load_or_make_folds(self._folds_path(), keys, labels, groups, self.num_folds, self.seed)

    def _pool(self, records: list[Record], entries: dict[str, IndexEntry]):
        usable = self._usable(records, entries)
        pool = [r for r, u in zip(records, usable) if u and r.split != "test"]
        return [r.key for r in pool], [r.label for r in pool], [r.subject for r in pool]

    # -- setup -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.photos:
            if self.photo_scan is None:
                self.photo_scan = scan_photos(self.photos.path, self.photos.min_prob, self.detect_device)
                self.datasets["predict"] = PhotoFacesDataset(
                    self.photo_scan, FaceTransform(self.views, self.image_size, None)
                )
            return
        if "train" in self.datasets:
            return
        records, entries = self._index()
        ok = self._usable(records, entries)
        split = np.array([r.split or "" for r in records])
        idx = np.arange(len(records))
        test = idx[ok & (split == "test")]
        if self.eval_split == "all":
            if stage == "fit":
                raise ValueError(
                    "data.eval_split='all' evaluates on every image of the source: use validate, test or predict "
                    "(with --ckpt_path), or set eval_split to 'official' to train"
                )
            train, val = idx[:0], idx[ok]
            test = val
            log.info("eval_split=all: evaluating on all %d usable images of %s", len(val), self.source.describe())
        elif self.fold is not None:
            pool = idx[ok & (split != "test")]
            if np.any(ok & (split == "val")):
                log.info("fold=%s: the official val split joins the fold pool", self.fold)
            keys, labels, groups = self._pool(records, entries)
            folds = load_or_make_folds(self._folds_path(), keys, labels, groups, self.num_folds, self.seed)
            train, val = pool[folds != self.fold], pool[folds == self.fold]
        else:
            train = idx[ok & np.isin(split, ["train", ""])]
            val = idx[ok & (split == "val")]
            if len(val) == 0:
                raise ValueError(
                    f"{self.source.describe()}: fold=None asks for the official splits, but there is no 'val' split; "
                    "set fold to a number to cut folds"
                )
        if len(test) == 0:
            log.warning("no official test split: the test set is the validation set")
            test = val
        if self.train_fraction < 1.0 and len(train):
            train = self._subset(train, np.array([records[i].label for i in train]))
        self.splits = {"train": train, "val": val, "test": test}
        points, boxes = face_geometry(records, entries, self.face_box)
        masks = view_masks(records, entries, points, self.views, self.min_view_inside)
        aug = None
        if self.augment:
            aug = AffineAugment() if self.augmentation == "affine" else train_augmentation()
        for name, ids in self.splits.items():
            tf = FaceTransform(self.views, self.image_size, aug if name == "train" else None)
            self.datasets[name] = FERDataset(
                [records[i].path for i in ids],
                np.array([records[i].label for i in ids], dtype=np.int64),
                [points[i] for i in ids],
                boxes[ids] if len(ids) else np.zeros((0, 4), np.float32),
                ids,
                tf,
                masks[ids],
            )
        counts = {k: len(v) for k, v in self.splits.items()}
        log.info("splits %s, classes %s", counts, self.class_names)
        if not masks.all():
            used = np.concatenate(list(self.splits.values()))
            real = masks[used].mean(0)
            log.info("views located (share of faces in the splits): %s",
                     ", ".join(f"{v} {100 * r:.1f}%" for v, r in zip(self.views, real)))

    def _subset(self, train: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """A stratified, seeded ``train_fraction`` of the training indices (scikit-learn)."""
        from sklearn.model_selection import train_test_split

        n_classes = len(np.unique(labels))
        if round(len(train) * self.train_fraction) < n_classes:
            raise ValueError(
                f"train_fraction={self.train_fraction} leaves fewer than {n_classes} training images "
                f"(one per class) of {len(train)}; raise it"
            )
        kept, _ = train_test_split(train, train_size=self.train_fraction, stratify=labels, random_state=self.seed)
        log.info("train_fraction=%s: training on %d of %d images (stratified)", self.train_fraction, len(kept), len(train))
        return np.sort(kept)

    def match_classes(self, model_classes: list[str]) -> dict[str, dict]:
        """Relabel the evaluation splits for a model whose classes are ``model_classes``
        (:func:`~lightning_fer.data.dataset.match_classes`: by name, unknown classes get -1 and
        are listed in ``unmatched-<split>.csv`` in the cache folder)."""
        self.class_match = match_classes(self.datasets, self.class_names, model_classes, self.cache_dir)
        return self.class_match

    # -- loaders -----------------------------------------------------------------------------
    def train_class_counts(self) -> np.ndarray:
        """Images per class in the training split."""
        labels = self.datasets["train"].labels
        return np.bincount(labels, minlength=len(self.class_names))

    def loader(self, name: str, train: bool = False, distributed: bool = True) -> DataLoader:
        """A loader over split ``name``: shuffled (or class-balanced) for training; for
        evaluation, each sample once, sharded over DDP processes unless ``distributed=False``."""
        ds = self.datasets[name]
        sampler = None
        if train and self.balanced_sampler:
            counts = np.maximum(self.train_class_counts(), 1)
            weights = torch.as_tensor(1.0 / counts[ds.labels], dtype=torch.double)
            sampler = WeightedRandomSampler(
                weights, num_samples=len(ds), replacement=True, generator=torch.Generator().manual_seed(self.seed)
            )
        elif not train and distributed and self._world_size() > 1:
            # Lightning's default DistributedSampler pads with repeated samples; evaluation must
            # count every sample once, so ranks get unequal shares instead.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(
                ds, num_replicas=self._world_size(), rank=self.trainer.global_rank, shuffle=False
            )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict" if self.photos else "test")

    def fingerprint(self) -> dict:
        """What an ensemble checks of its members' data: source, fold, seed, training indices."""
        train_keys = [self.records[i].key for i in self.splits.get("train", [])]
        return {
            "source": self.source.describe(),
            "fold": self.fold,
            "num_folds": self.num_folds,
            "seed": self.seed,
            "train_hash": hashlib.sha1("\0".join(sorted(train_keys)).encode()).hexdigest(),
            "num_train": len(train_keys),
        }

    def describe_counts(self) -> dict[str, dict[str, int]]:
        """Images per class and split, for reports."""
        out = {}
        for name, ds in self.datasets.items():
            c = Counter(ds.labels.tolist())
            out[name] = {self.class_names[k]: int(c.get(k, 0)) for k in range(len(self.class_names))}
        return out
