"""lightning_fer: facial expression recognition with PyTorch Lightning and pluggable ensembles.

Heavy imports are deferred so that ``python -m lightning_fer --help`` answers fast.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import

__version__ = "0.1.0.dev0"

_LAZY = {
    "FERDataModule": "lightning_fer.data.datamodule",
    "FERClassifier": "lightning_fer.models.classifier",
    "EnsembleModule": "lightning_fer.ensemble.module",
    "pretrained": "lightning_fer.zoo",  # lightning_fer.pretrained("fer2013"): a shipped model by name
    "analyze": "lightning_fer.predict.api",  # lightning_fer.analyze("photo.jpg"): faces and expressions in one call
    "Predictor": "lightning_fer.predict.api",  # the model and the detector, loaded once
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lightning_fer' has no attribute {name!r}")


__all__ = list(_LAZY)
