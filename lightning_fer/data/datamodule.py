"""``FERDataModule``: any source -> checked images with landmarks -> folds -> region views."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from lightning_fer.data.augment import TrainingData
from lightning_fer.data.dataset import FERDataset, SourceName, build_source, make_loader, match_classes
from lightning_fer.data.detection import LandmarkMode, LandmarkSettings
from lightning_fer.data.duplicates import DuplicatePolicy
from lightning_fer.data.geometry import FaceBox, face_geometry, say_face_box, view_masks
from lightning_fer.data.prepare import PreparedSource
from lightning_fer.data.regions import check_views
from lightning_fer.data.sources import FERSource, Record
from lightning_fer.data.transforms import FaceTransform, normalize_batch
from lightning_fer.options import group, plain
from lightning_fer.predict.inputs import PhotoFacesDataset, PredictOptions, scan_photos

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
        seed: seed of the fold assignment and of the balanced sampler (the folds are saved in the
            cache folder, so that every backbone and the stacking step see the same split).
        landmarks: how landmarks are found (:class:`~lightning_fer.data.detection.LandmarkSettings`:
            ``mode`` (``auto``: annotation, else MTCNN; ``annotation``, ``mtcnn`` or ``template``),
            ``no_face``, MTCNN's ``batch_size``, ``device`` and thresholds, ``min_inside``); a mode
            name alone (``landmarks: template``) is the mode with the other defaults.
        face_box: what the ``face`` view shows. ``auto``: the annotated box, else MTCNN's, else
            (template landmarks) the whole image. ``image``: the whole image, for pre-cropped
            faces (FER2013, CK+48, RAF-DB aligned), where MTCNN's box is larger than the crop;
            parts still come from the landmarks. ``landmarks``: MTCNN's box, or one derived from
            the landmarks. ``annotation``: the annotated box (an error lists records without one).
            At ``predict``, ``image`` labels each whole picture (frame) as one face, without MTCNN.
        skip_bad_images: leave unreadable images out (counted, listed in ``skipped.csv``).
        cache_dir: folder for the caches, folds and lists (default: ``.lightning_fer`` next to
            the data when writable, else ``~/.cache/lightning_fer/<hash>``).
        training: how the training split is drawn and augmented (:class:`~lightning_fer.data.augment.TrainingData`).
        predict: what ``predict`` labels and where it writes (:class:`~lightning_fer.predict.inputs.PredictOptions`:
            ``path``, ``output``, ``annotate_dir``, ``min_face_prob``, ``video``); ``None``: the test split.
        duplicates: ``keep`` byte-identical images, or ``drop`` copies (one kept in the most
            protected split; see :mod:`lightning_fer.data.duplicates`), listed in ``duplicates.csv``.
        eval_split: ``official``: validate on the validation split (a fold, or ``val``), test on
            ``test``. ``all``: validate, test and predict on every usable image, whatever its
            split (another data set tested with a model trained elsewhere); ``fit`` is refused.
        wire: ``uint8``: pixels, normalised on the model's device (4x fewer bytes); ``float32``: in the workers.
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
        channels: Literal[1, 3] = 3,
        batch_size: int = 32,
        num_workers: int = 2,
        fold: int | None = 0,
        num_folds: int = 5,
        seed: int = 0,
        landmarks: LandmarkSettings | LandmarkMode = LandmarkSettings(),  # noqa: B008 (frozen)
        face_box: FaceBox = "auto",
        training: TrainingData = TrainingData(),  # noqa: B008 (frozen)
        duplicates: DuplicatePolicy = "keep",
        skip_bad_images: bool = False,
        cache_dir: str | None = None,
        eval_split: Literal["official", "all"] = "official",
        wire: Literal["float32", "uint8"] = "float32",
        predict: PredictOptions | None = None,
    ) -> None:
        super().__init__()
        landmarks, training = LandmarkSettings.of(landmarks), group(TrainingData, training)
        if landmarks.mode == "dlib" and face_box == "image" and landmarks.dlib_on == "box":
            # Pictures taken as faces: Dlib's own detector finds the face inside each first (a loose
            # crop), the whole picture only where it finds none (a tight crop such as FER2013's).
            landmarks = dataclasses.replace(landmarks, dlib_on="find")
        predict = PredictOptions.of(predict)
        if fold is not None and not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in [0, {num_folds}) or None, got {fold}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        for option, value, choices in (("face_box", face_box, ("auto", "image", "landmarks", "annotation")),
                                       ("duplicates", duplicates, ("keep", "drop")), ("channels", channels, (1, 3)),
                                       ("eval_split", eval_split, ("official", "all")), ("wire", wire, ("float32", "uint8"))):
            _one_of(option, value, choices)
        self.source = build_source(source, root, split_map)
        self.views = check_views(views)
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.fold, self.num_folds, self.seed = fold, num_folds, seed
        self.face_box, self.eval_split, self.training = face_box, eval_split, training
        self.duplicates, self.skip_bad_images = duplicates, skip_bad_images
        self.wire, self.channels = wire, channels
        self.landmark_settings = landmarks
        self.prepared = PreparedSource(self.source, landmarks, cache_dir, duplicates, skip_bad_images, num_workers,
                                       landmarks.batch_size, landmarks.device, None if face_box == "image" else 3 * image_size)
        #: photos and videos to predict on (``None``: predict on the test split).
        self.predict_options = predict
        # The groups are saved as plain mappings, so that checkpoints load with weights_only=True.
        landmarks, training, predict = plain(landmarks), plain(training), plain(predict)
        self.save_hyperparameters(ignore=["source"] if isinstance(source, FERSource) else None)
        self.class_match: dict[str, dict] = {}
        self.photo_scan, self.splits, self.datasets = None, {}, {}

    photos = property(lambda self: self.predict_options, doc="The ``predict`` group (0.2's ``dm.photos``).")

    @property
    def cache_dir(self) -> Path:
        """The landmark cache, folds and lists (``cache_dir``, or :func:`~lightning_fer.data.prepare.default_cache_dir`)."""
        return self.prepared.cache_dir

    @property
    def records(self) -> list[Record]:
        """Every record of the source (after ``prepare_data()``/``setup()`` read it)."""
        return self.prepared.records

    @property
    def class_names(self) -> list[str] | None:
        """Class names in label order (reads the source on first use). ``None`` where the source
        is not on this machine (predicting on photos with a shipped model, exporting it): the
        model's own classes are used; always when predicting on photos (the source is never read then)."""
        if self.predict_options is not None:
            return None
        try:
            return self.prepared.load()[1]
        except FileNotFoundError as err:
            # Not here (a shipped model's config names the data it learnt from): the model keeps
            # its own classes; what needs the data (prepare_data, setup) raises the error itself.
            if not getattr(self, "_said_no_source", False):
                log.info("%s; the model's own classes are used", err)
                self._said_no_source = True
            return None

    num_classes = property(lambda self: len(self.class_names), doc="Number of classes.")

    index_report = property(lambda self: self.prepared.index_report, doc="What the landmark pass found.")
    duplicate_report = property(lambda self: self.prepared.duplicate_report, doc="What ``duplicates: drop`` did.")

    def _folds_path(self) -> Path:
        return self.prepared.folds_path(self.num_folds, self.seed)

    def prepare_data(self) -> None:
        """Check every image, find landmarks (cached), and write the folds file."""
        if self.predict_options and self.trainer is not None and self.trainer.predicting:
            return  # photos are scanned in setup("predict"); the training data need not be here
        self.prepared.index()
        if self.fold is not None and self.eval_split == "official":
            self.prepared.folds(self._folds_path(), self.num_folds, self.seed)

    def _verified_on_this_machine(self) -> bool:
        """``landmarks.trust_cache``, or Lightning ran ``prepare_data()`` (which checks every file) on this
        machine's local rank 0 before this rank's ``setup()``."""
        t = self.trainer
        trust = self.landmark_settings.trust_cache
        if trust or t is None or t.world_size <= 1 or t.local_rank == 0:
            return trust  # local rank 0 (or alone): its prepare_data() index is in memory
        return bool(self.prepare_data_per_node) or t.node_rank == 0

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_options:
            if self.photo_scan is None:
                opts = self.predict_options
                self.use_scan(scan_photos(opts.path, opts.min_face_prob, self.landmark_settings.device, opts.video,
                                          whole_image=self.face_box == "image"))
            return
        if "train" in self.datasets:
            return
        if self.eval_split == "all" and stage == "fit":
            raise ValueError(
                "data.eval_split='all' evaluates on every image of the source: use validate, test or predict "
                "(with --ckpt_path), or set eval_split to 'official' to train"
            )
        records, index = self.prepared.index(verify=not self._verified_on_this_machine())
        self.splits = self.prepared.splits(self.eval_split, self.fold, self._folds_path(), self.num_folds, self.seed,
                                           self.training.fraction, self.training.bootstrap)
        points, boxes = face_geometry(records, index, self.face_box)
        say_face_box(index, self.face_box, self.prepared.settings.mode, self.image_size)
        masks = view_masks(index, self.views, self.landmark_settings.min_inside)
        aug = self.training.augmenter()
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

    def use_scan(self, scan) -> None:
        """Predict on the faces of ``scan``: what ``setup("predict")`` and :class:`lightning_fer.Predictor` share."""
        self.photo_scan = scan
        self.datasets["predict"] = PhotoFacesDataset(
            scan, FaceTransform(self.views, self.image_size, None, wire=self.wire, channels=self.channels))

    def match_classes(self, model_classes: list[str]) -> dict[str, dict]:
        """Relabel the evaluation splits for a model whose classes are ``model_classes``
        (:func:`~lightning_fer.data.dataset.match_classes`: by name, unknown classes get -1 and
        are listed in ``unmatched-<split>.csv`` in the cache folder)."""
        key = tuple(model_classes)
        if self.predict_options is not None and self.class_names is None:
            return {}  # photos without their training data here: nothing labelled to relabel
        if getattr(self, "_matched_for", None) != key:  # once per model class list: one log, one listing
            self.class_match = match_classes(self.datasets, self.class_names, model_classes, self.cache_dir)
            self._matched_for = key
        return self.class_match

    def train_class_counts(self) -> np.ndarray:
        """Images per class in the training split."""
        return np.bincount(self.datasets["train"].labels, minlength=len(self.class_names))

    def loader(self, name: str, train: bool = False, distributed: bool = True) -> DataLoader:
        """A loader over split ``name``: shuffled (or class-balanced) for training; for
        evaluation, each sample once, sharded over DDP processes unless ``distributed=False``."""
        if not train and self.trainer is not None:
            # Relabel by name before the workers copy the dataset (on_test_start comes after).
            names = getattr(self.trainer.lightning_module, "class_names", None)
            if names and not (name == "predict" and self.predict_options):  # photos carry no labels
                self.match_classes(list(names))
        ds = self.datasets[name]
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        counts = self.train_class_counts() if train and self.training.balanced_sampler else None
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
        return self.loader("predict" if self.predict_options else "test")

    def fingerprint(self) -> dict:
        """What an ensemble checks of its members' data: source, fold, seed, training indices."""
        train_keys = self.records.keys.take(self.splits.get("train", []))
        return {"source": self.source.describe(), "fold": self.fold, "num_folds": self.num_folds, "seed": self.seed,
                "train_hash": hashlib.sha1("\0".join(sorted(train_keys)).encode()).hexdigest(),
                "num_train": len(train_keys)}
