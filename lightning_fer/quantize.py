"""int8 inference: ONNX Runtime's static quantisation of an exported model, calibrated on real faces,
and the two checks that decide whether it may be used.

1. When a model is shipped (``python -m benchmarks.ship_int8``), its exported graph is quantised
   (weights int8 per output channel in 7 bits, activations uint8, QDQ format) with ranges calibrated on a few
   hundred FER2013 Training faces; float32 and int8 are both scored on PublicTest, and the int8 file
   ships beside the bundle with its SHA-256 and both figures in ``models.json``. It is *checked* when
   it loses at most :data:`MAX_LOSS` points.
2. At predict, ``--data.predict.runtime auto`` considers int8 only for a model whose int8 version
   passed that check, and on the first batch of real faces compares int8's labels with float32's:
   below :data:`MIN_AGREEMENT` it falls back to float32 for the rest of the run, with a log line.

    >>> import numpy as np
    >>> label_agreement(np.array([[2.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]))
    0.5
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

#: the most PublicTest accuracy (points) an int8 model may lose against float32 to be checked
MAX_LOSS = 0.3
#: the share of faces whose labels int8 must give as float32 does in the quick check at predict
MIN_AGREEMENT = 0.95

__all__ = ["MAX_LOSS", "MIN_AGREEMENT", "label_agreement", "passes", "quantize"]


def quantize(fp32: str | os.PathLike, out: str | os.PathLike, faces, batch: int = 32) -> Path:
    """Quantise the exported model ``fp32`` (input named ``input``) to int8 at ``out``, with the
    activation ranges of ``faces`` (an array shaped as the model's input, normalised as it sees
    them). Written atomically: a kill leaves no half file at ``out``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    faces = np.ascontiguousarray(np.asarray(faces, dtype=np.float32))
    if len(faces) == 0:
        raise ValueError("int8 calibration needs at least one face")

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([faces[i:i + batch] for i in range(0, len(faces), batch)])

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"input": x}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre, part = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        # reduce_range (7-bit weights): x86 CPUs without VNNI multiply uint8 by int8 with a
        # saturating instruction; with full-range weights the shipped fer2013 agreed with float32
        # on 80.6% of 1,024 PublicTest faces, with 7-bit weights on 98.1% (AMD EPYC, 2026-12-03).
        quantize_static(str(pre), str(part), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(part, out)
    return out


def label_agreement(a, b) -> float:
    """The share of rows whose highest score is the same class in ``a`` and ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    return float((a.argmax(-1) == b.argmax(-1)).mean()) if len(a) else 1.0


def passes(entry: dict | None, kind: str = "int8") -> tuple[bool, str]:
    """Whether a shipped model's ``int8`` (or ``bf16``) record in ``models.json`` passed the ship-time
    check, and why (or why not) in words.

    Example:
        >>> passes({"float32_acc": 67.5, "bf16_acc": 67.4}, "bf16")
        (True, "67.40% on PublicTest against float32's 67.50% (+0.10 points lost; at most 0.3 allowed)")
    """
    if not entry:
        return False, f"no {kind} version was shipped and checked for this model"
    loss = float(entry["float32_acc"]) - float(entry[f"{kind}_acc"])
    said = (f"{entry[f'{kind}_acc']:.2f}% on PublicTest against float32's {entry['float32_acc']:.2f}% "
            f"({loss:+.2f} points lost; at most {MAX_LOSS} allowed)")
    return round(loss, 6) <= MAX_LOSS, said
