"""Data: sources, landmarks, regions, folds, transforms and the FERDataModule.

The names are handed on lazily, so that importing one module of the package (``data.io`` from the
predict package, say) does not import the data module and all it needs.
"""

from __future__ import annotations

_LAZY = {
    "BASIC7": "lightning_fer.data.classes",
    "BASIC8": "lightning_fer.data.classes",
    "FERDataModule": "lightning_fer.data.datamodule",
    "BadImagesError": "lightning_fer.data.dataset",
    "FERDataset": "lightning_fer.data.dataset",
    "REGIONS": "lightning_fer.data.regions",
    "region_boxes": "lightning_fer.data.regions",
    "AffectNetSource": "lightning_fer.data.sources",
    "DataFormatError": "lightning_fer.data.sources",
    "FERSource": "lightning_fer.data.sources",
    "FolderSource": "lightning_fer.data.sources",
    "ManifestSource": "lightning_fer.data.sources",
    "Record": "lightning_fer.data.sources",
    "SyntheticSource": "lightning_fer.data.sources",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lightning_fer.data' has no attribute {name!r}")


__all__ = sorted(_LAZY)
