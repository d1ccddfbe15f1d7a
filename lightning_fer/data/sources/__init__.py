"""Readers that turn a data source into :class:`Record` lists.

Every source yields the same records (path, label, subject, split, face box, landmarks), so that
the rest of the pipeline never knows whether faces came from AffectNet, an image folder, a
manifest CSV or the synthetic demo. One reader a module.
"""

from lightning_fer.data.sources.affectnet import AFFECTNET_COLUMNS, AffectNetSource
from lightning_fer.data.sources.base import (
    IMAGE_EXTENSIONS,
    SPLIT_ALIASES,
    SPLITS,
    DataFormatError,
    FERSource,
    Record,
    SourceReport,
    format_landmarks,
    parse_landmarks,
)
from lightning_fer.data.sources.folder import FolderSource
from lightning_fer.data.sources.manifest import MANIFEST_OPTIONAL, MANIFEST_REQUIRED, ManifestSource, write_manifest
from lightning_fer.data.sources.synthetic import SyntheticSource

__all__ = [
    "AFFECTNET_COLUMNS",
    "IMAGE_EXTENSIONS",
    "MANIFEST_OPTIONAL",
    "MANIFEST_REQUIRED",
    "SPLITS",
    "SPLIT_ALIASES",
    "AffectNetSource",
    "DataFormatError",
    "FERSource",
    "FolderSource",
    "ManifestSource",
    "Record",
    "SourceReport",
    "SyntheticSource",
    "format_landmarks",
    "parse_landmarks",
    "write_manifest",
]
