"""One split as a torch ``Dataset`` of region views, the sources by name, and matching a split's
classes to a model's."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from lightning_fer.data.io import read_image
from lightning_fer.data.records import RecordTable, Taken
from lightning_fer.data.sources import AffectNetSource, FERSource, FolderSource, ManifestSource, Record, SyntheticSource
from lightning_fer.data.transforms import FaceTransform
from lightning_fer.files import write_csv

log = logging.getLogger(__name__)

SourceName = Literal["synthetic", "affectnet", "folder", "manifest"]


class BadImagesError(RuntimeError):
    """Some images cannot be used; the message lists every one with its reason."""


def build_source(
    source: SourceName | FERSource, root: str | None, split_map: dict[str, str] | None = None
) -> FERSource:
    """A source object from a name and a root, or the given object."""
    if isinstance(source, FERSource):
        return source
    if source == "synthetic":
        return SyntheticSource(root)
    if root is None:
        raise ValueError(f"source {source!r} needs a root: set data.root (e.g. --data.root=/path/to/data)")
    if source == "affectnet":
        return AffectNetSource(root)
    if source == "folder":
        return FolderSource(root, split_map=split_map)
    if source == "manifest":
        return ManifestSource(root)
    raise ValueError(f"unknown source {source!r}; choose synthetic, affectnet, folder or manifest, or give a FERSource")


class FERDataset(Dataset):
    """Items of one split: decode, landmarks, augmentation, region views, normalisation.

    Items are ``{"image": [3, S, S], "views": [V, 3, S, S], "view_mask": [V], "label": int,
    "index": int}``; ``index`` is the item's position in the data module's record list, stable
    across splits; ``view_mask`` says which views could be located for this face (``False``: the
    view is there, cut where the landmarks guessed, but carries no information).
    """

    def __init__(
        self,
        paths: list[str],
        labels: np.ndarray,
        points: list[np.ndarray],
        boxes: np.ndarray,
        indices: np.ndarray,
        transform: FaceTransform,
        view_mask: np.ndarray | None = None,
    ) -> None:
        self.paths = paths
        self.labels = labels
        #: the source's own labels; ``labels`` may be remapped to a model's classes
        #: (:meth:`FERDataModule.match_classes`), with -1 for classes the model does not know.
        self.source_labels = labels.copy()
        self.points = points
        self.boxes = boxes
        self.indices = indices
        self.transform = transform
        n, v = len(paths), len(transform.views)
        self.view_mask = np.ones((n, v), bool) if view_mask is None else np.asarray(view_mask, bool)
        if self.view_mask.shape != (n, v):
            raise ValueError(f"view_mask has shape {self.view_mask.shape}, expected ({n}, {v})")
        self._seeded_pid: int | None = None

    @classmethod
    def of_records(cls, records: RecordTable | list[Record], ids: np.ndarray, points, boxes: np.ndarray,
                   masks: np.ndarray, transform: FaceTransform) -> FERDataset:
        """The records ``ids`` of a source, with the landmarks, face boxes and view masks of all
        its records (as :mod:`~lightning_fer.data.geometry` computes them).

        Paths and landmarks are read row by row from the record and index columns (no list of
        them is made), so forked loader workers share those pages instead of copying them."""
        records = RecordTable.of(records)
        ids = np.asarray(ids, np.int64)
        return cls(Taken(records.paths, ids), np.asarray(records.labels)[ids].astype(np.int64), Taken(points, ids),
                   boxes[ids] if len(ids) else np.zeros((0, 4), np.float32), ids, transform, masks[ids])

    def __len__(self) -> int:
        return len(self.paths)

    def _reseed(self) -> None:
        # Forked workers inherit one augmentation RNG state: reseed once per process so that
        # workers do not repeat each other's augmentations.
        pid = os.getpid()
        if self._seeded_pid != pid and self.transform.augment is not None:
            self.transform.augment.set_random_seed(torch.initial_seed() % 2**32)
            self._seeded_pid = pid

    def __getitem__(self, i: int) -> dict:
        self._reseed()
        image = read_image(self.paths[i])
        box = self.boxes[i]
        out = self.transform(image, self.points[i], None if np.isnan(box[0]) else box)
        return {
            "image": torch.from_numpy(out["image"]),
            "views": torch.from_numpy(out["views"]),
            "view_mask": torch.from_numpy(self.view_mask[i]),
            "label": int(self.labels[i]),
            "index": int(self.indices[i]),
        }


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are made: the data module's ``loader`` option group (``--data.loader.batch_size=64``).

    Args:
        batch_size: batch size per device.
        num_workers: DataLoader workers (and decoding threads in ``prepare_data()``).
        wire: ``uint8``: pixels, normalised on the model's device (4x fewer bytes; for GPUs: 0.71x
            on a 2-core CPU, benchmarks/README.md); ``float32``: normalised in the workers.

    Example:
        >>> LoaderSettings(wire="int8")
        Traceback (most recent call last):
        ...
        ValueError: loader.wire must be 'float32' or 'uint8', got 'int8'
    """

    batch_size: int = 32
    num_workers: int = 2
    wire: Literal["float32", "uint8"] = "float32"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"loader.batch_size must be at least 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"loader.num_workers must be 0 or more, got {self.num_workers}")
        if self.wire not in ("float32", "uint8"):
            raise ValueError(f"loader.wire must be 'float32' or 'uint8', got {self.wire!r}")


def make_loader(ds: Dataset, batch_size: int, num_workers: int, train: bool = False,
                class_counts: np.ndarray | None = None, seed: int = 0, shard: tuple[int, int] = (1, 0)) -> DataLoader:
    """A loader over ``ds``: shuffled for training, or drawn with probability inverse to the class
    size where ``class_counts`` is given; for evaluation over ``shard = (world size, rank)``, each
    sample counted once (Lightning's default DistributedSampler pads with repeated samples)."""
    sampler = None
    if class_counts is not None:
        weights = torch.as_tensor(1.0 / np.maximum(class_counts, 1)[ds.labels], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, num_samples=len(ds), replacement=True,
                                        generator=torch.Generator().manual_seed(seed))
    elif shard[0] > 1:
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        sampler = UnrepeatedDistributedSampler(ds, num_replicas=shard[0], rank=shard[1], shuffle=False)
    return DataLoader(ds, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=num_workers, persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())


def match_classes(
    datasets: dict[str, FERDataset], data_classes: list[str], model_classes: list[str], cache_dir: Path
) -> dict[str, dict]:
    """Relabel the evaluation splits for a model whose classes are ``model_classes``.

    Classes are matched by name. Images of classes the model does not know get label -1,
    which every metric of the library ignores; they are counted, logged and listed in
    ``unmatched-<split>.csv`` in the cache folder. Classes the model knows and the data
    lacks are logged. Returns, per split, ``{"unknown": {class: count}, "missing":
    [class, ...], "kept": n, "listing": path}`` (empty where the classes agree).
    """
    data_classes = list(data_classes)
    model_classes = list(model_classes)
    class_match: dict[str, dict] = {}
    if data_classes == model_classes:
        return class_match
    lookup = np.array([model_classes.index(n) if n in model_classes else -1 for n in data_classes], np.int64)
    for name, ds in datasets.items():
        if name == "train" or not isinstance(ds, FERDataset):
            continue
        ds.labels = lookup[ds.source_labels] if len(ds.source_labels) else ds.source_labels.copy()
        unknown = Counter(data_classes[k] for k in ds.source_labels[ds.labels < 0].tolist())
        present = {data_classes[k] for k in set(ds.source_labels.tolist())}
        listing = cache_dir / f"unmatched-{name}.csv"
        rows = [(ds.paths[i], data_classes[ds.source_labels[i]]) for i in np.flatnonzero(ds.labels < 0)]
        write_csv(listing, ["path", "class"], rows)
        info = {"unknown": dict(unknown), "missing": [c for c in model_classes if c not in present],
                "kept": int((ds.labels >= 0).sum()), "listing": str(listing)}
        class_match[name] = info
        log.warning(
            "%s split: the model knows %s; %d image(s) of classes it does not know are left out of the figures "
            "(%s; listed in %s); classes the data lacks: %s", name, model_classes, sum(unknown.values()),
            ", ".join(f"{k} {v}" for k, v in sorted(unknown.items())) or "none", listing,
            ", ".join(info["missing"]) or "none",
        )
    return class_match
