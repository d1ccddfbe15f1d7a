"""Prediction in one place: inputs (photos, videos, arrays), face detection and tracking, runtimes
(eager, ONNX Runtime, int8) and writers (rows, timelines, annotated copies); its front door is
:func:`analyze` and :class:`Predictor`.

    >>> from lightning_fer.predict import analyze          # doctest: +SKIP
    >>> analyze("photo.jpg")[0]["label"]                    # doctest: +SKIP
    'happy'
"""

from __future__ import annotations

_LAZY = {
    "analyze": "lightning_fer.predict.api",  # faces and expressions in one call
    "Predictor": "lightning_fer.predict.api",  # the model, the detector and the runtime, loaded once
    "PredictOptions": "lightning_fer.predict.inputs",  # predict's option group
    "VideoOptions": "lightning_fer.predict.video",  # how videos are read and their faces followed
    "FacePredictionWriter": "lightning_fer.predict.writers",  # rows, timelines and annotated copies
    "OnnxPredict": "lightning_fer.predict.runtimes",  # the runtime predict runs the network through
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lightning_fer.predict' has no attribute {name!r}")


__all__ = list(_LAZY)
