"""Backbone builders, registered by name: the small-face networks, SPP-net, any torchvision
classifier (Inception V3 and ResNet50 among them) and, with timm, ``timm/<name>``.

Every builder returns a plain ``nn.Module`` mapping ``[B, C, H, W]`` to logits ``[B, classes]``
(Inception V3 in training mode with its auxiliary head returns ``(logits, aux_logits)``).
"""

from __future__ import annotations

import inspect
import logging
import os
import urllib.error
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from lightning_fer.models.registry import (
    TIMM_PREFIX,
    backbone_names,
    builder_options,
    get_builder,
    register_backbone,
    takes_any_option,
)
from lightning_fer.models.small_faces import FERVGGNet, FERXceptionNet
from lightning_fer.models.spp import SPPNet, zf5

log = logging.getLogger(__name__)

#: Inception V3's auxiliary head needs 299 px; the network itself needs 75 px.
INCEPTION_AUX_MIN = 299
INCEPTION_MIN = 75
SMALL_FACE_TRUNKS = ("fer_vgg", "fer_xception")
SPP_TRUNKS = ("zf5", *SMALL_FACE_TRUNKS, "resnet*", "resnext*", "wide_resnet*", "or any torchvision model with .features")


def available_backbones() -> list[str]:
    """Every backbone name: the registry's and every torchvision classification model
    (``timm/<name>`` too where timm is installed)."""
    return [n for n in backbone_names() if n not in ("torchvision", "timm")]


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


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.endswith((".pt", ".pth", ".ckpt", ".bin")) or Path(spec).exists()


def load_state(spec: str, model_name: str) -> dict[str, torch.Tensor]:
    """Pretrained tensors from a local file or from torchvision weights (downloaded, or taken
    from the torch hub cache when already there)."""
    if _looks_like_path(spec):
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
            f"elsewhere and either pass it as pretrained=/path/to/{fname} (--model.pretrained=...) or put it in "
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


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
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


def _trunk(name: str, pretrained: str | None) -> nn.Module:
    """Convolutional layers of a torchvision model, a small-face network or ZF-5, for SPP-net."""
    if name == "zf5":
        if pretrained and not _looks_like_path(pretrained):
            raise ValueError("the zf5 trunk has no torchvision weights; give a local file or a torchvision trunk")
        return zf5()
    if name in SMALL_FACE_TRUNKS:
        return get_builder(name)(num_classes=1).features
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown SPP trunk {name!r}; use {SPP_TRUNKS}")
    model = torchvision.models.get_model(name, weights=None)
    if pretrained and not _looks_like_path(pretrained):
        load_matching(model, load_state(pretrained, name), pretrained)
    if hasattr(model, "layer4"):
        return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4)
    if hasattr(model, "features"):
        return model.features
    raise ValueError(f"SPP trunk {name!r} has neither layer4 nor .features; use {SPP_TRUNKS}")


def create_backbone(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    pretrained: str | None = None,
    **options,
) -> nn.Module:
    """Build a backbone by name, through the registry (:mod:`~lightning_fer.models.registry`).

    Args:
        name: a registered name (``fer_vgg``, ``fer_xception``, ``sppnet``, ``inception_v3``,
            ``resnet50`` ...), any torchvision classification model, or ``timm/<name>``.
        num_classes: outputs.
        in_channels: 1 or 3.
        image_size: input side; decides Inception V3's auxiliary head (on from 299 px).
        pretrained: torchvision weights (``ResNet50_Weights.IMAGENET1K_V2``, ``DEFAULT``) or a
            local file (state dict or Lightning checkpoint); for ``sppnet`` the weights of the
            trunk model.
        options: the builder's own options (an unknown one is refused with the list of known
            ones): ``widths``, ``convs_per_stage``, ``drop_rate`` for ``fer_vgg``; ``stem_width``,
            ``widths``, ``drop_rate`` for ``fer_xception``; ``spp_levels``, ``spp_trunk``,
            ``spp_hidden``, ``dropout`` for ``sppnet``; ``stem`` for torchvision models
            (``imagenet``, or in the ResNet family ``small_pool``: a 3x3 stride-1 ``conv1``, the
            max-pool kept, about 4x the compute; ``small``: no max-pool either, about 16x);
            any keyword of ``timm.create_model`` for ``timm/<name>``.

    Example:
        >>> net = create_backbone("resnet18", num_classes=7)
        >>> net(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 7])
        >>> create_backbone("fer_vgg", 7, in_channels=1, widths=[8, 16])(torch.randn(2, 1, 48, 48)).shape
        torch.Size([2, 7])
    """
    builder = get_builder(name)
    known = builder_options(builder)
    unknown = sorted(set(options) - set(known))
    if unknown and not takes_any_option(builder):
        raise ValueError(f"backbone {name!r} takes no option {unknown}; its options: {known} "
                         "(set them under model.backbone_args)")
    if "name" in inspect.signature(builder).parameters:
        options["name"] = name
    return builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size, pretrained=pretrained,
                   **options)


@register_backbone("sppnet")
def _build_sppnet(num_classes: int, in_channels: int = 3, image_size: int = 224, pretrained: str | None = None,
                  spp_levels: Sequence[int] = (1, 2, 4), spp_trunk: str = "zf5", spp_hidden: int = 1024,
                  dropout: float = 0.5, stem: str = "imagenet") -> nn.Module:
    """SPP-net: a trunk (``zf5``, a torchvision model, or ``fer_vgg`` / ``fer_xception`` for small
    faces), then 1x1 + 2x2 + 4x4 max pooling: any input size."""
    if stem != "imagenet":
        raise ValueError(f"stem={stem!r} is for ResNet-family backbones, not sppnet")
    trunk = _trunk(spp_trunk, pretrained)
    model: nn.Module = SPPNet(trunk, num_classes, spp_levels, spp_hidden, dropout)
    if pretrained and _looks_like_path(pretrained):
        load_matching(model, load_state(pretrained, "sppnet"), pretrained)
    _adapt_first_conv(model, in_channels)
    return model


@register_backbone("torchvision")
def _build_torchvision(name: str, num_classes: int, in_channels: int = 3, image_size: int = 224,
                       pretrained: str | None = None, stem: str = "imagenet") -> nn.Module:
    """Any torchvision classification model by its name; Inception V3 with its auxiliary head
    from 299 px."""
    kwargs: dict = {}
    if name == "inception_v3":
        if image_size < INCEPTION_MIN:
            raise ValueError(
                f"inception_v3 needs inputs of at least {INCEPTION_MIN} px, got image_size={image_size}; raise "
                f"data.image_size or choose another backbone"
            )
        aux = image_size >= INCEPTION_AUX_MIN
        if not aux:
            log.info(
                "inception_v3 at %d px: auxiliary classifier off (it needs %d px); loss is the main head's alone",
                image_size, INCEPTION_AUX_MIN,
            )
        # transform_input converts ImageNet-normalised input to the [-1, 1] range torchvision's
        # pretrained Inception weights expect; from scratch, leave the input alone.
        kwargs = dict(aux_logits=aux, transform_input=bool(pretrained and not _looks_like_path(pretrained)), init_weights=True)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if name == "inception_v3":
        # torchvision initialises every layer of Inception V3 with a truncated normal of std 0.1;
        # on the 2048-wide classifier that gives logits of std ~4 and a starting loss of ~5.8 for
        # 7 classes (ln 7 = 1.95), from which training from scratch barely moves. PyTorch's own
        # Linear initialisation starts at ~2.1.
        model.fc.reset_parameters()
        if aux:
            model.AuxLogits.fc.reset_parameters()
    _small_stem(model, name, stem)
    if pretrained:
        load_matching(model, load_state(pretrained, name), pretrained)
    _adapt_first_conv(model, in_channels)
    return model


@register_backbone("timm")
def _build_timm(name: str, num_classes: int, in_channels: int = 3, image_size: int = 224,
                pretrained: str | None = None, **options) -> nn.Module:
    """``timm/<name>``: ``timm.create_model(name, num_classes=..., in_chans=...)`` from scratch;
    ``pretrained`` is a local weights file (timm's hub downloads need a network)."""
    import timm

    model_name = name[len(TIMM_PREFIX):]
    if model_name not in timm.list_models():
        raise ValueError(f"timm has no model {model_name!r} (timm.list_models() lists them)")
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **options)
    if pretrained:
        if not _looks_like_path(pretrained):
            raise ValueError(f"pretrained={pretrained!r}: for timm/<name> give a local weights file")
        load_matching(model, load_state(pretrained, model_name), pretrained)
    return model


@register_backbone("fer_vgg")
def _build_fer_vgg(num_classes: int, in_channels: int = 3, image_size: int = 48, pretrained: str | None = None,
                   widths: Sequence[int] = (32, 64, 128, 256), convs_per_stage: int = 2,
                   drop_rate: float = 0.3) -> nn.Module:
    """:class:`~lightning_fer.models.small_faces.FERVGGNet` (VGG-style, for 40-64 px faces)."""
    return _local_weights(FERVGGNet(num_classes, in_channels, widths, convs_per_stage, drop_rate), pretrained)


@register_backbone("fer_xception")
def _build_fer_xception(num_classes: int, in_channels: int = 3, image_size: int = 48, pretrained: str | None = None,
                        stem_width: int = 32, widths: Sequence[int] = (64, 128, 256, 512),
                        drop_rate: float = 0.2) -> nn.Module:
    """:class:`~lightning_fer.models.small_faces.FERXceptionNet` (depthwise-separable residual)."""
    return _local_weights(FERXceptionNet(num_classes, in_channels, stem_width, widths, drop_rate), pretrained)


def _local_weights(model: nn.Module, pretrained: str | None) -> nn.Module:
    if pretrained:
        if not _looks_like_path(pretrained):
            raise ValueError(f"pretrained={pretrained!r}: the small-face networks have no torchvision weights; "
                             "give a local weights file")
        load_matching(model, load_state(pretrained, "small-face network"), pretrained)
    return model


STEMS = ("imagenet", "small_pool", "small")


def _small_stem(model: nn.Module, name: str, stem: str) -> None:
    """Replace a ResNet-family stem for small inputs (see :func:`create_backbone`)."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if stem == "imagenet":
        return
    conv, pool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(pool, nn.MaxPool2d):
        raise ValueError(f"stem={stem!r} needs a ResNet-family backbone (conv1 and maxpool); {name} has none: "
                         "use stem: imagenet")
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if stem == "small":
        model.maxpool = nn.Identity()
