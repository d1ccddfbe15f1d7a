"""Backbone builders, registered by name: the small-face networks, SPP-net, any torchvision
classifier (Inception V3 and ResNet50 among them) and, with timm, ``timm/<name>``.

Every builder returns a plain ``nn.Module`` mapping ``[B, C, H, W]`` to logits ``[B, classes]``
(Inception V3 in training mode with its auxiliary head returns ``(logits, aux_logits)``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

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
from lightning_fer.models.weights import adapt_first_conv, load_matching, load_state, looks_like_path

__all__ = ["available_backbones", "create_backbone", "load_matching", "load_state"]

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


def _trunk(name: str, pretrained: str | None) -> nn.Module:
    """Convolutional layers of a torchvision model, a small-face network or ZF-5, for SPP-net."""
    if name == "zf5":
        if pretrained and not looks_like_path(pretrained):
            raise ValueError("the zf5 trunk has no torchvision weights; give a local file or a torchvision trunk")
        return zf5()
    if name in SMALL_FACE_TRUNKS:
        return get_builder(name)(num_classes=1).features
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown SPP trunk {name!r}; use {SPP_TRUNKS}")
    model = torchvision.models.get_model(name, weights=None)
    if pretrained and not looks_like_path(pretrained):
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
        >>> import torch
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
    if pretrained and looks_like_path(pretrained):
        load_matching(model, load_state(pretrained, "sppnet"), pretrained)
    adapt_first_conv(model, in_channels)
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
        kwargs = dict(aux_logits=aux, transform_input=bool(pretrained and not looks_like_path(pretrained)), init_weights=True)
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
    adapt_first_conv(model, in_channels)
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
        if not looks_like_path(pretrained):
            raise ValueError(f"pretrained={pretrained!r}: for timm/<name> give a local weights file")
        load_matching(model, load_state(pretrained, model_name), pretrained)
    return model


@register_backbone("fer_vgg")
def _build_fer_vgg(num_classes: int, in_channels: int = 3, image_size: int = 48, pretrained: str | None = None,
                   widths: Sequence[int] = (32, 64, 128, 256), convs_per_stage: int | Sequence[int] = 2,
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
        if not looks_like_path(pretrained):
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
