"""Export a member (FERClassifier) or a whole ensemble to TorchScript or ONNX, checked against
the eager model.

    python -m lightning_fer export --config configs/demo/resnet50.yaml --ckpt_path best.ckpt \\
        --format torchscript --output resnet50.pt
    python -m lightning_fer export --config configs/demo/ensemble_hard.yaml --format onnx --output ensemble.onnx

A member's exported graph maps images ``[B, 3, S, S]`` to logits ``[B, C]``; an ensemble's maps
views ``[B, V, 3, S, S]`` to class scores ``[B, C]``. ONNX needs the ``onnx`` extra
(``pip install -e ".[onnx]"``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch
from torch import nn

log = logging.getLogger(__name__)


class _Graph(nn.Module):
    """What is exported: the module's forward on its natural input, in eval mode."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def plain(module: nn.Module) -> nn.Module:
    """What is exported: the plain network inside a LightningModule of the library (an
    ``EnsembleModule``'s :class:`~lightning_fer.ensemble.EnsembleNet`, a ``FERClassifier``'s
    :class:`~lightning_fer.ensemble.MemberNet`), or ``module`` itself."""
    from lightning_fer.ensemble.members import MemberNet
    from lightning_fer.ensemble.module import EnsembleModule
    from lightning_fer.models.classifier import FERClassifier

    if isinstance(module, EnsembleModule):
        return module.ensemble
    if isinstance(module, FERClassifier):
        return MemberNet.from_classifier(module)
    return module


def example_input(module: nn.Module, batch: int = 2, image_size: int | None = None) -> torch.Tensor:
    """A random input of the right shape for a member (``[B, C, S, S]``) or an ensemble
    (``[B, V, 3, S, S]``), at the size it was built for unless ``image_size`` says otherwise."""
    from lightning_fer.ensemble.net import EnsembleNet

    net = plain(module)
    if isinstance(net, EnsembleNet):
        size = image_size or net.image_size
        return torch.randn(batch, len(net.views), 3, size, size)
    size = image_size or int(net.image_size)
    return torch.randn(batch, int(getattr(net, "in_channels", 3)), size, size)


def export(
    module: nn.Module,
    output: str | os.PathLike,
    format: Literal["torchscript", "onnx"] = "torchscript",
    example: torch.Tensor | None = None,
    atol: float = 1e-4,
) -> tuple[Path, float]:
    """Export ``module``, reload the file, and compare its outputs with the eager ones.

    Returns:
        the path written and the largest absolute difference seen.

    Raises:
        RuntimeError: the exported model disagrees with the eager one by more than ``atol``.
    """
    module = plain(module).eval().cpu()
    graph = _Graph(module).eval()
    x = example if example is not None else example_input(module)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if format not in ("torchscript", "onnx"):
        raise ValueError(f"format must be 'torchscript' or 'onnx', got {format!r}")
    # Written in a hidden folder beside the output under the output's own name (an ONNX file's
    # external data is named after the file it belongs to), checked there, then renamed into
    # place; the folder goes whatever happens.
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp = work / out.name
    try:
        with torch.no_grad():
            expected = graph(x)
            x2 = torch.cat([x, x[:1]])  # a second batch size must work too (nothing baked in)
            if format == "torchscript":
                traced = torch.jit.trace(graph, x, check_trace=False)
                traced.save(str(tmp))
                loaded = torch.jit.load(str(tmp))
                got, got2 = loaded(x), loaded(x2)
            else:
                got, got2 = _export_onnx(graph, x, x2, tmp, module)
            diff = max(float((got - expected).abs().max()), float((got2 - graph(x2)).abs().max()))
        if diff > atol:
            raise RuntimeError(f"exported {format} model differs from the eager one by {diff:.2e} (> {atol})")
        side = sorted(work.iterdir())
        for f in side:  # the external data (if any) first, so the model never points at nothing
            if f != tmp:
                os.replace(f, out.parent / f.name)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("exported %s to %s (%s; max |difference| from eager: %.2e)", type(module).__name__, out, format, diff)
    return out, diff


#: Protocol buffers cap one file at 2 GB: below this, ONNX weights stay inside the model file.
ONNX_INLINE_LIMIT = 1_900_000_000


def _export_onnx(graph: nn.Module, x: torch.Tensor, x2: torch.Tensor, path: Path, module: nn.Module):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx extra: pip install -e '.[onnx]'") from err
    size = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    # torch.export-based exporter: the TorchScript-based one loses the spatial sizes that
    # SPP-net's adaptive pooling needs once an ensemble batches its views.
    torch.onnx.export(
        graph, (x,), str(path), input_names=["input"], output_names=["output"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, opset_version=18, dynamo=True,
        external_data=size >= ONNX_INLINE_LIMIT,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    run = lambda t: torch.from_numpy(sess.run(None, {"input": t.numpy()})[0])  # noqa: E731
    return run(x), run(x2)
