"""Pretrained weights for backbones: torchvision weights by name or a local file, loaded by
matching names and shapes, and a 3-channel first convolution adapted to grey input."""

from __future__ import annotations

import logging
import os
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)


def _resolve_weights(model_name: str, spec: str):
    """A torchvision weights enum from ``ResNet50_Weights.IMAGENET1K_V2``, ``IMAGENET1K_V1`` or
    ``DEFAULT``."""
    try:
        if "." in spec:
            return torchvision.models.get_weight(spec)
        return torchvision.models.get_model_weights(model_name)[spec]
    except (KeyError, ValueError, AttributeError) as err:
        try:
            known = [w.name for w in torchvision.models.get_model_weights(model_name)] + ["DEFAULT"]
        except (KeyError, ValueError):
            known = []
        raise ValueError(
            f"pretrained={spec!r} is neither a file nor torchvision weights for {model_name!r} "
            f"(known: {known}) ({err})"
        ) from None


def looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.endswith((".pt", ".pth", ".ckpt", ".bin")) or Path(spec).exists()


def load_state(spec: str, model_name: str) -> dict[str, torch.Tensor]:
    """Pretrained tensors from a local file or from torchvision weights (downloaded, or taken
    from the torch hub cache when already there)."""
    if looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
        out = {}
        for k, v in state.items():
            for prefix in ("backbone.", "module.", "model."):
                if k.startswith(prefix):
                    k = k[len(prefix) :]
            out[k] = v
        return out
    weights = _resolve_weights(model_name, spec)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        fname = weights.url.rsplit("/", 1)[-1]
        raise RuntimeError(
            f"could not fetch {weights} from {weights.url} ({err}). Without a network, download that file "
            f"elsewhere and either pass it as pretrained=/path/to/{fname} (--model.backbone_args.pretrained=...) or put it in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}/"
        ) from None


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load the tensors whose names and shapes match; a 3-channel first convolution feeds a
    1-channel one by summing over colour. Returns the names left as initialised."""
    own = model.state_dict()
    matched = {}
    for k, v in state.items():
        if k not in own:
            continue
        if v.shape == own[k].shape:
            matched[k] = v
        elif v.ndim == 4 and own[k].ndim == 4 and v.shape[1] == 3 and own[k].shape[1] == 1 and v.shape[0] == own[k].shape[0]:
            matched[k] = v.sum(1, keepdim=True)
    if len(matched) < 0.5 * len(own):
        raise ValueError(
            f"{source}: only {len(matched)} of the model's {len(own)} tensors match by name and shape; "
            "is this the right architecture?"
        )
    model.load_state_dict(matched, strict=False)
    left = [k for k in own if k not in matched]
    log.info("loaded %d/%d tensors from %s; left as initialised: %s", len(matched), len(own), source, left[:6])
    return left


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first 3-channel convolution for an ``in_channels`` one (weights summed)."""
    if in_channels == 3:
        return
    if in_channels != 1:
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                new = nn.Conv2d(
                    1, child.out_channels, child.kernel_size, child.stride, child.padding,
                    child.dilation, child.groups, child.bias is not None,
                )
                with torch.no_grad():
                    new.weight.copy_(child.weight.sum(1, keepdim=True))
                    if child.bias is not None:
                        new.bias.copy_(child.bias)
                setattr(parent, name, new)
                return
    raise ValueError("no 3-channel convolution found to adapt to in_channels=1")
