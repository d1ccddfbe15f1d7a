"""Data: sources, landmarks, regions, folds, transforms and the FERDataModule."""

from lightning_fer.data.classes import BASIC7, BASIC8
from lightning_fer.data.datamodule import FERDataModule
from lightning_fer.data.dataset import BadImagesError, FERDataset
from lightning_fer.data.regions import REGIONS, region_boxes
from lightning_fer.data.sources import (
    AffectNetSource,
    DataFormatError,
    FERSource,
    FolderSource,
    ManifestSource,
    Record,
    SyntheticSource,
)

__all__ = [
    "BASIC7",
    "BASIC8",
    "REGIONS",
    "AffectNetSource",
    "BadImagesError",
    "DataFormatError",
    "FERDataModule",
    "FERDataset",
    "FERSource",
    "FolderSource",
    "ManifestSource",
    "Record",
    "SyntheticSource",
    "region_boxes",
]
