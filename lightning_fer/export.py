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


class _scripting:
    """Lightning's own exporters set ``_jit_is_scripting`` so that tracing does not trip over the
    ``trainer`` property of a module that is not attached to one; members are LightningModules too."""

    def __init__(self, module: nn.Module) -> None:
        import lightning as L

        self.modules = [m for m in module.modules() if isinstance(m, L.LightningModule)]

    def __enter__(self):
        for m in self.modules:
            m._jit_is_scripting = True

    def __exit__(self, *exc):
        for m in self.modules:
            m._jit_is_scripting = False


def example_input(module: nn.Module, batch: int = 2, image_size: int | None = None) -> torch.Tensor:
    """A random input of the right shape for a member or an ensemble."""
    from lightning_fer.ensemble.module import EnsembleModule

    if isinstance(module, EnsembleModule):
        size = image_size or max(int(m.hparams.image_size) for m in module.members)
        return torch.randn(batch, len(module.views), 3, size, size)
    size = image_size or int(module.hparams.image_size)
    return torch.randn(batch, int(module.hparams.in_channels), size, size)


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
    module = module.eval().cpu()
    graph = _Graph(module).eval()
    x = example if example is not None else example_input(module)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}{out.suffix}")
    with torch.no_grad(), _scripting(module):
        expected = graph(x)
        if format == "torchscript":
            traced = torch.jit.trace(graph, x, check_trace=False)
            traced.save(str(tmp))
            got = torch.jit.load(str(tmp))(x)
            # A second batch size must work too (nothing was baked in by tracing).
            x2 = torch.cat([x, x[:1]])
            diff2 = (torch.jit.load(str(tmp))(x2) - graph(x2)).abs().max().item()
        elif format == "onnx":
            try:
                import onnxruntime as ort
            except ImportError as err:
                raise ImportError("ONNX export needs the onnx extra: pip install -e '.[onnx]'") from err
            # torch.export-based exporter: the TorchScript-based one loses the spatial sizes that
            # SPP-net's adaptive pooling needs once an ensemble batches its views.
            torch.onnx.export(
                graph, (x,), str(tmp), input_names=["input"], output_names=["output"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, opset_version=18, dynamo=True,
            )
            sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
            x2 = torch.cat([x, x[:1]])
            diff2 = float((torch.from_numpy(sess.run(None, {"input": x2.numpy()})[0]) - graph(x2)).abs().max())
        else:
            raise ValueError(f"format must be 'torchscript' or 'onnx', got {format!r}")
    diff = max(float((got - expected).abs().max()), diff2)
    if diff > atol:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"exported {format} model differs from the eager one by {diff:.2e} (> {atol})")
    os.replace(tmp, out)
    log.info("exported %s to %s (max |difference| from eager: %.2e)", type(module).__name__, out, diff)
    return out, diff


def main(argv: list[str]) -> tuple[Path, float]:
    """``export`` subcommand: the usual ``--config``/overrides, ``--ckpt_path``, ``--format``,
    ``--output``."""
    from lightning_fer.cli import main as cli_main

    opts = {"--format": "torchscript", "--output": None, "--ckpt_path": None}
    rest: list[str] = []
    it = iter(argv)
    for a in it:
        key = a.split("=", 1)[0]
        if key in opts:
            opts[key] = a.split("=", 1)[1] if "=" in a else next(it)
        else:
            rest.append(a)
    if not opts["--output"]:
        raise SystemExit("export: give --output FILE (.pt for torchscript, .onnx for onnx)")
    cli = cli_main(rest, run=False)
    model = cli.model
    if opts["--ckpt_path"]:
        ckpt = torch.load(opts["--ckpt_path"], map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
    size = getattr(cli.datamodule, "image_size", None)
    path, diff = export(model, opts["--output"], opts["--format"], example_input(model, image_size=size))  # type: ignore[arg-type]
    print(f"exported {type(model).__name__} to {path} ({opts['--format']}); max |difference| from eager: {diff:.2e}")
    return path, diff
