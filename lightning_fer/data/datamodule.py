"""``FERDataModule``: any source -> checked images with landmarks -> folds -> region views."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from lightning_fer.data.augment import AffineAugment, train_augmentation
from lightning_fer.data.dataset import FERDataset, SourceName, build_source, make_loader, match_classes
from lightning_fer.data.detection import LandmarkMode, LandmarkSettings, NoFacePolicy
from lightning_fer.data.duplicates import DuplicatePolicy
from lightning_fer.data.geometry import FaceBox, face_geometry, view_masks
from lightning_fer.data.photos import DEFAULT_OUTPUT, PhotoFacesDataset, PhotoOptions, scan_photos
from lightning_fer.data.prepare import PreparedSource
from lightning_fer.data.regions import check_views
from lightning_fer.data.sources import FERSource, Record
from lightning_fer.data.transforms import FaceTransform, normalize_batch
from lightning_fer.data.video import VideoOptions

log = logging.getLogger(__name__)


def _one_of(option: str, value, choices: tuple) -> None:
    if value not in choices:
        listing = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{option} must be {listing}, got {value!r}")


class FERDataModule(L.LightningDataModule):
    """Facial expression data from any source, with landmarks, folds and region views.

    ``prepare_data()`` checks every image once, finds landmarks and caches both; ``setup()``
    cuts the folds (saved, so every backbone and the stacking step see the same split) and builds
    the datasets. Batches: ``{"image", "views" [B, V, 3, S, S], "view_mask", "label", "index"}``.

    Splits: records with the official ``test`` split form the test set (AffectNet's validation
    set, the demo's held-out subjects); with ``fold`` set, the others are cut into
    ``num_folds`` stratified folds (subject-disjoint where subjects are known) and fold
    ``fold`` validates; with ``fold=None`` the official ``train`` and ``val`` splits are used
    (with no ``val`` split, every training image trains and nothing validates).

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
        face_box: what the ``face`` view shows. ``auto``: the annotated box, else MTCNN's, else
            (template landmarks) the whole image. ``image``: the whole image, for pre-cropped
            faces (FER2013, CK+48, RAF-DB aligned), where MTCNN's box is larger than the crop;
            parts still come from the landmarks. ``landmarks``: MTCNN's box, or one derived from
            the landmarks. ``annotation``: the annotated box (an error lists records without one).
        min_view_inside: a part whose box (as the landmarks place it) lies less than this share
            inside the image is marked missing for that face.
        skip_bad_images: leave unreadable images out (counted, listed in ``skipped.csv``)
            instead of failing before training.
        cache_dir: folder for the landmark cache, folds and lists (default: ``.lightning_fer``
            next to the data when writable, else ``~/.cache/lightning_fer/<hash>``).
        balanced_sampler: draw training samples with probability inverse to their class size.
        augment: augment training images.
        augmentation: ``affine`` (default, :class:`~lightning_fer.data.augment.AffineAugment`:
            one warp per view) or ``albumentations`` (the same distribution, ~4x slower per face).
        detect_batch_size: MTCNN batch size in ``prepare_data()``.
        detect_device: device for MTCNN (default: CUDA when available).
        predict_path: an image, a video, or a folder of them: ``predict`` labels every face MTCNN
            finds there (tracked in videos) instead of the test split.
        predict_output: ``predict``'s rows per face (``.csv`` or ``.json``; default
            ``runs/predict/predictions.csv``); annotate_dir: copies with boxes and labels;
            min_face_prob: MTCNN's threshold; video: :class:`~lightning_fer.data.video.VideoOptions`.
        duplicates: ``keep`` byte-identical images, or ``drop`` copies (one kept in the most
            protected split; see :mod:`lightning_fer.data.duplicates`), listed in ``duplicates.csv``.
        train_fraction: train on a stratified, seeded subset of this fraction of the training
            split (validation and test splits stay whole), to fit a time budget.
        eval_split: ``official``: validate on the validation split (a fold, or ``val``), test on
            ``test``. ``all``: validate, test and predict on every usable image, whatever its
            split (another data set tested with a model trained elsewhere); ``fit`` is refused.
        wire: ``uint8``: batches carry pixels, normalised by the model on its device (4x fewer
            bytes from workers and to a GPU); ``float32``: normalised in the workers.
        channels: 3, or 1 for grey data (FER2013, CK+): views carry one channel, and the CLI
            gives the model ``in_channels`` from it.

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
        video: VideoOptions | None = None,
        duplicates: DuplicatePolicy = "keep",
        train_fraction: float = 1.0,
        eval_split: Literal["official", "all"] = "official",
        wire: Literal["float32", "uint8"] = "float32",
        channels: Literal[1, 3] = 3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["source"] if isinstance(source, FERSource) else None)
        self.source = build_source(source, root, split_map)
        self.views = check_views(views)
        if fold is not None and not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in [0, {num_folds}) or None, got {fold}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        for option, value, choices in (("face_box", face_box, ("auto", "image", "landmarks", "annotation")),
                                       ("augmentation", augmentation, ("affine", "albumentations")),
                                       ("duplicates", duplicates, ("keep", "drop")), ("channels", channels, (1, 3)),
                                       ("eval_split", eval_split, ("official", "all")), ("wire", wire, ("float32", "uint8"))):
            _one_of(option, value, choices)
        if not 0.0 <= min_view_inside <= 1.0:
            raise ValueError(f"min_view_inside must be in [0, 1], got {min_view_inside}")
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.fold, self.num_folds, self.seed, self.folds_file = fold, num_folds, seed, folds_file
        self.face_box, self.min_view_inside, self.eval_split = face_box, min_view_inside, eval_split
        self.balanced_sampler, self.augment, self.augmentation = balanced_sampler, augment, augmentation
        self.duplicates, self.train_fraction, self.skip_bad_images = duplicates, train_fraction, skip_bad_images
        self.detect_device, self.wire, self.channels = detect_device, wire, channels
        self.landmark_settings = LandmarkSettings(mode=landmarks, no_face=no_face)
        self.prepared = PreparedSource(self.source, self.landmark_settings, cache_dir, duplicates, skip_bad_images,
                                       num_workers, detect_batch_size, detect_device)
        #: photos to predict on (``None``: predict on the test split); the writer reads its outputs.
        self.photos = PhotoOptions(predict_path, predict_output or DEFAULT_OUTPUT, annotate_dir, min_face_prob,
                                   video or VideoOptions()) if predict_path else None
        self.class_match: dict[str, dict] = {}
        self.photo_scan, self.splits, self.datasets = None, {}, {}

    # -- what the prepared source knows ----------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        """The landmark cache, folds and lists (``cache_dir``, or :func:`~lightning_fer.data.prepare.default_cache_dir`)."""
        return self.prepared.cache_dir

    @property
    def records(self) -> list[Record]:
        """Every record of the source (after ``prepare_data()``/``setup()`` read it)."""
        return self.prepared.records

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (reads the source on first use)."""
        return self.prepared.load()[1]

    num_classes = property(lambda self: len(self.class_names), doc="Number of classes.")

    index_report = property(lambda self: self.prepared.index_report, doc="What the landmark pass found.")
    duplicate_report = property(lambda self: self.prepared.duplicate_report, doc="What ``duplicates: drop`` did.")

    def _folds_path(self) -> Path:
        return self.prepared.folds_path(self.folds_file, self.num_folds, self.seed)

    def prepare_data(self) -> None:
        """Check every image, find landmarks (cached), and write the folds file."""
        if self.photos and self.trainer is not None and self.trainer.predicting:
            return  # photos are scanned in setup("predict"); the training data need not be here
        self.prepared.index()
        if self.fold is not None and self.eval_split == "official":
            self.prepared.folds(self._folds_path(), self.num_folds, self.seed)

    # -- setup -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.photos:
            if self.photo_scan is None:
                self.photo_scan = scan_photos(self.photos.path, self.photos.min_prob, self.detect_device,
                                              self.photos.video)
                self.datasets["predict"] = PhotoFacesDataset(
                    self.photo_scan, FaceTransform(self.views, self.image_size, None, wire=self.wire,
                                                                    channels=self.channels)
                )
            return
        if "train" in self.datasets:
            return
        if self.eval_split == "all" and stage == "fit":
            raise ValueError(
                "data.eval_split='all' evaluates on every image of the source: use validate, test or predict "
                "(with --ckpt_path), or set eval_split to 'official' to train"
            )
        records, entries = self.prepared.index()
        self.splits = self.prepared.splits(self.eval_split, self.fold, self._folds_path(), self.num_folds, self.seed,
                                           self.train_fraction)
        points, boxes = face_geometry(records, entries, self.face_box)
        masks = view_masks(records, entries, points, self.views, self.min_view_inside)
        aug = None
        if self.augment:
            aug = AffineAugment() if self.augmentation == "affine" else train_augmentation()
        for name, ids in self.splits.items():
            tf = FaceTransform(self.views, self.image_size, aug if name == "train" else None, wire=self.wire,
                               channels=self.channels)
            self.datasets[name] = FERDataset.of_records(records, ids, points, boxes, masks, tf)
        log.info("splits %s, classes %s", {k: len(v) for k, v in self.splits.items()}, self.class_names)
        if not masks.all():
            used = np.concatenate(list(self.splits.values()))
            real = masks[used].mean(0)
            log.info("views located (share of faces in the splits): %s",
                     ", ".join(f"{v} {100 * r:.1f}%" for v, r in zip(self.views, real)))

    def match_classes(self, model_classes: list[str]) -> dict[str, dict]:
        """Relabel the evaluation splits for a model whose classes are ``model_classes``
        (:func:`~lightning_fer.data.dataset.match_classes`: by name, unknown classes get -1 and
        are listed in ``unmatched-<split>.csv`` in the cache folder)."""
        key = tuple(model_classes)
        if getattr(self, "_matched_for", None) != key:  # once per model class list: one log, one listing
            self.class_match = match_classes(self.datasets, self.class_names, model_classes, self.cache_dir)
            self._matched_for = key
        return self.class_match

    # -- loaders -----------------------------------------------------------------------------
    def train_class_counts(self) -> np.ndarray:
        """Images per class in the training split."""
        return np.bincount(self.datasets["train"].labels, minlength=len(self.class_names))

    def loader(self, name: str, train: bool = False, distributed: bool = True) -> DataLoader:
        """A loader over split ``name``: shuffled (or class-balanced) for training; for
        evaluation, each sample once, sharded over DDP processes unless ``distributed=False``."""
        if not train and self.trainer is not None:
            # Relabel by name before the workers copy the dataset (on_test_start comes after).
            names = getattr(self.trainer.lightning_module, "class_names", None)
            if names:
                self.match_classes(list(names))
        ds = self.datasets[name]
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        counts = self.train_class_counts() if train and self.balanced_sampler else None
        return make_loader(ds, self.batch_size, self.num_workers, train, counts, self.seed,
                           (world, rank) if not train and distributed else (1, 0))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Pixels sent as uint8 (``wire: uint8``) are normalised here, on the model's device."""
        return normalize_batch(batch)

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
        return {"source": self.source.describe(), "fold": self.fold, "num_folds": self.num_folds, "seed": self.seed,
                "train_hash": hashlib.sha1("\0".join(sorted(train_keys)).encode()).hexdigest(),
                "num_train": len(train_keys)}
