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
from lightning_fer.data.dataset import FERDataset, LoaderSettings, SourceName, build_source, make_loader, match_classes
from lightning_fer.data.detection import LandmarkMode, LandmarkSettings
from lightning_fer.data.folds import FoldSettings
from lightning_fer.data.geometry import FaceBox, face_geometry, say_face_box, view_masks
from lightning_fer.data.prepare import PreparedSource, RecordSettings
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

    Splits: :class:`~lightning_fer.data.folds.FoldSettings` (``folds``): records with the official
    ``test`` split form the test set; the others are cut into folds, or the official ``train`` and
    ``val`` splits are used.

    Args:
        source: ``synthetic``, ``affectnet``, ``folder``, ``manifest`` (with ``root``), or a
            :class:`~lightning_fer.data.sources.FERSource` given by ``class_path``.
        root: the data set folder (the manifest CSV for ``manifest``); for ``synthetic``, where
            the demo faces are written.
        views: regions each item yields, from ``face``, ``left_eye``, ``right_eye``, ``nose``,
            ``mouth``, ``rest``.
        image_size: side of each view in pixels.
        channels: 3, or 1 for grey data (FER2013, CK+): views carry one channel, and the CLI
            gives the model ``in_channels`` from it.
        face_box: what the ``face`` view shows. ``auto``: the annotated box, else MTCNN's, else
            (template landmarks) the whole image. ``image``: the whole image, for pre-cropped
            faces (FER2013, CK+48, RAF-DB aligned), where MTCNN's box is larger than the crop;
            parts still come from the landmarks. ``landmarks``: MTCNN's box, or one derived from
            the landmarks. ``annotation``: the annotated box (an error lists records without one).
            At ``predict``, ``image`` labels each whole picture (frame) as one face, without MTCNN.
        landmarks: how landmarks are found (:class:`~lightning_fer.data.detection.LandmarkSettings`:
            ``mode`` (``auto``: annotation, else MTCNN; ``annotation``, ``mtcnn`` or ``template``),
            ``no_face``, MTCNN's ``batch_size``, ``device`` and thresholds, ``min_inside``); a mode
            name alone (``landmarks: template``) is the mode with the other defaults.
        folds: how the records are split (:class:`~lightning_fer.data.folds.FoldSettings`: ``fold``,
            ``num_folds``, ``seed``, ``eval_split``).
        records: which records are read and where the caches go
            (:class:`~lightning_fer.data.prepare.RecordSettings`: ``split_map``, ``duplicates``,
            ``skip_bad_images``, ``cache_dir``).
        loader: how batches are made (:class:`~lightning_fer.data.dataset.LoaderSettings`:
            ``batch_size``, ``num_workers``, ``wire``).
        training: how the training split is drawn and augmented (:class:`~lightning_fer.data.augment.TrainingData`).
        predict: what ``predict`` labels and where it writes (:class:`~lightning_fer.predict.inputs.PredictOptions`:
            ``path``, ``output``, ``annotate_dir``, ``min_face_prob``, ``video``); ``None``: the test split.

    Example:
        >>> import tempfile
        >>> from lightning_fer.data.sources import SyntheticSource
        >>> src = SyntheticSource(tempfile.mkdtemp(), num_subjects=6, images_per_class=2, test_subjects=1, image_size=64)
        >>> dm = FERDataModule(src, views=["face", "mouth"], image_size=32, loader={"batch_size": 4, "num_workers": 0})
        >>> dm.prepare_data(); dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["views"].shape), dm.num_classes
        ((4, 2, 3, 32, 32), 7)
    """

    def __init__(
        self,
        source: SourceName | FERSource = "synthetic",
        root: str | None = None,
        views: list[str] = ["face"],  # noqa: B006 (a list so that LightningCLI shows it as one)
        image_size: int = 224,
        channels: Literal[1, 3] = 3,
        face_box: FaceBox = "auto",
        landmarks: LandmarkSettings | LandmarkMode = LandmarkSettings(),  # noqa: B008 (frozen)
        folds: FoldSettings = FoldSettings(),  # noqa: B008 (frozen)
        records: RecordSettings = RecordSettings(),  # noqa: B008 (frozen)
        loader: LoaderSettings = LoaderSettings(),  # noqa: B008 (frozen)
        training: TrainingData = TrainingData(),  # noqa: B008 (frozen)
        predict: PredictOptions | None = None,
    ) -> None:
        super().__init__()
        landmarks, training = LandmarkSettings.of(landmarks), group(TrainingData, training)
        folds, records, loader = group(FoldSettings, folds), group(RecordSettings, records), group(LoaderSettings, loader)
        if landmarks.mode == "dlib" and face_box == "image" and landmarks.dlib_on == "box":
            # Pictures taken as faces: Dlib's own detector finds the face inside each first (a loose
            # crop), the whole picture only where it finds none (a tight crop such as FER2013's).
            landmarks = dataclasses.replace(landmarks, dlib_on="find")
        predict = PredictOptions.of(predict)
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        for option, value, choices in (("face_box", face_box, ("auto", "image", "landmarks", "annotation")),
                                       ("channels", channels, (1, 3))):
            _one_of(option, value, choices)
        self.source = build_source(source, root, records.split_map)
        self.views = check_views(views)
        self.image_size, self.channels, self.face_box = image_size, channels, face_box
        self.batch_size, self.num_workers, self.wire = loader.batch_size, loader.num_workers, loader.wire
        self.fold, self.num_folds, self.seed, self.eval_split = folds.fold, folds.num_folds, folds.seed, folds.eval_split
        self.duplicates, self.skip_bad_images, self.training = records.duplicates, records.skip_bad_images, training
        self.landmark_settings = landmarks
        self.prepared = PreparedSource(self.source, landmarks, records.cache_dir, records.duplicates,
                                       records.skip_bad_images, loader.num_workers, landmarks.batch_size,
                                       landmarks.device, None if face_box == "image" else 3 * image_size)
        #: photos and videos to predict on (``None``: predict on the test split).
        self.predict_options = predict
        # The groups are saved as plain mappings, so that checkpoints load with weights_only=True.
        landmarks, training, predict = plain(landmarks), plain(training), plain(predict)
        folds, records, loader = plain(folds), plain(records), plain(loader)
        self.save_hyperparameters(ignore=["source"] if isinstance(source, FERSource) else None)
        self.class_match: dict[str, dict] = {}
        self.photo_scan, self.splits, self.datasets = None, {}, {}

    photos = property(lambda self: self.predict_options, doc="The ``predict`` group (0.2's ``dm.photos``).")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, **overrides) -> FERDataModule:  # type: ignore[override]
        """The data module a checkpoint was trained with (its ``datamodule_hyper_parameters``, read
        with ``weights_only=True``; options of earlier versions moved into their groups by
        :func:`~lightning_fer.data.legacy.current_data_options`), with ``overrides`` on top. A source
        given as an object was not saved: pass it again as ``source=``."""
        from lightning_fer.checkpoints import safe_load
        from lightning_fer.data.legacy import current_data_options

        saved = current_data_options(dict(safe_load(checkpoint_path).get("datamodule_hyper_parameters") or {}))[0]
        return cls(**{k: v for k, v in saved.items() if not k.startswith("_")} | overrides)

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
                "data.folds.eval_split='all' evaluates on every image of the source: use validate, test or predict "
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
