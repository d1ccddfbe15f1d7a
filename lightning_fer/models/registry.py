"""One registry of backbone builders, looked up by name (timm's ``register_model`` pattern).

A builder is a function ``(num_classes, in_channels, image_size, pretrained, **options) ->
nn.Module``; its keyword options are what a config may set under ``model.backbone_args``.
Besides registered names, every torchvision classification model is known by its own name, and
with timm installed every timm model as ``timm/<name>``.

Example:
    >>> from torch import nn
    >>> @register_backbone("tiny_linear")
    ... def tiny_linear(num_classes, in_channels=3, image_size=48, pretrained=None):
    ...     return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))
    >>> "tiny_linear" in backbone_names()
    True
    >>> _ = unregister_backbone("tiny_linear")
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable

from torch import nn

Builder = Callable[..., nn.Module]

_BUILDERS: dict[str, Builder] = {}
TIMM_PREFIX = "timm/"


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``fn`` the builder of backbone ``name`` (a name may be registered once)."""

    def wrap(fn: Builder) -> Builder:
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise ValueError(f"backbone {name!r} is already registered (by {_BUILDERS[name].__module__})")
        _BUILDERS[name] = fn
        return fn

    return wrap


def unregister_backbone(name: str) -> Builder:
    """Remove and return the builder of ``name`` (for tests and plug-ins)."""
    return _BUILDERS.pop(name)


def registered_backbones() -> list[str]:
    """Names registered with :func:`register_backbone` (the library's own and any plug-in's)."""
    return sorted(_BUILDERS)


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def timm_available() -> bool:
    return importlib.util.find_spec("timm") is not None


def backbone_names() -> list[str]:
    """Every name :func:`get_builder` accepts: registered ones and torchvision's classifiers
    (timm's, as ``timm/<name>``, are not listed: there are over a thousand)."""
    return sorted(set(_BUILDERS) | set(_torchvision_names()))


def get_builder(name: str) -> Builder:
    """The builder of ``name``: a registered one, a torchvision classifier, or ``timm/<name>``.
    An unknown name raises ``ValueError`` listing the known ones."""
    if name in _BUILDERS:
        return _BUILDERS[name]
    if name.startswith(TIMM_PREFIX):
        if not timm_available():
            raise ValueError(f"backbone {name!r} needs timm: pip install 'lightning-fer[timm]' (or pip install timm)")
        return _BUILDERS["timm"]
    if name in _torchvision_names():
        return _BUILDERS["torchvision"]
    own = registered_backbones()
    own = [n for n in own if n not in ("torchvision", "timm")]
    raise ValueError(
        f"unknown backbone {name!r}; the library's: {own}; or any torchvision classifier "
        f"({len(_torchvision_names())}, e.g. resnet18, mobilenet_v3_small), or timm/<name> with timm installed"
    )


def builder_options(builder: Builder) -> list[str]:
    """The keyword options a builder takes beyond the four every builder gets."""
    fixed = {"name", "num_classes", "in_channels", "image_size", "pretrained"}
    params = inspect.signature(builder).parameters.values()
    return [p.name for p in params if p.name not in fixed and p.kind is not p.VAR_KEYWORD]


def takes_any_option(builder: Builder) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())


def builder_kwargs(name: str, flat, flat_names, args: dict | None) -> dict:
    """The options for ``name``'s builder: ``args`` (``backbone_args``), over the ``flat_names``
    entries of ``flat`` (a classifier's older flat options) that the builder takes."""
    known = builder_options(get_builder(name))
    opts = {k: flat[k] for k in flat_names if k in flat and k in known}
    return {**opts, **dict(args or {})}
