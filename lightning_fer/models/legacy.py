"""The flat options of 0.1 and 0.2 checkpoints and code, moved into the classifier's option groups."""

from __future__ import annotations

import logging

from lightning_fer.models.optim import Optimization
from lightning_fer.models.registry import builder_options, get_builder
from lightning_fer.options import group, plain

log = logging.getLogger("lightning_fer.models.classifier")


#: 0.1 and 0.2's flat options, by the group that holds them now (``backbone_args``: the
#: builder's options, kept where the builder takes them).
_LEGACY_OPTIM = ("optimizer", "lr", "weight_decay", "scheduler", "cycles", "warmup")
_LEGACY_DISTILL = {"teacher": "teacher", "distill_weight": "weight", "distill_temperature": "temperature"}
_LEGACY_BACKBONE = ("spp_levels", "spp_trunk", "spp_hidden", "dropout", "stem")


def migrate(backbone: str, backbone_args, optim, distill, legacy: dict):
    """Move 0.1/0.2 flat options (``legacy``) into ``backbone_args``, ``optim`` and ``distill``;
    returns them and the old ``channels_last`` (``None`` when not given)."""
    unknown = sorted(set(legacy) - set(_LEGACY_OPTIM) - set(_LEGACY_DISTILL) - set(_LEGACY_BACKBONE)
                     - {"channels_last", "compile"})
    if unknown:
        raise TypeError(f"FERClassifier got unknown option(s) {unknown}; its options are its signature's, "
                        "and 0.2's flat ones (lr, optimizer, spp_levels, stem, teacher ...) moved into optim, "
                        "backbone_args and distill (see CHANGELOG.md)")
    if not legacy:
        return backbone_args, optim, distill, None
    moved = sorted(k for k in legacy if k not in ("channels_last", "compile"))
    if moved:
        log.info("FERClassifier: flat option(s) %s (0.1/0.2) moved into optim, backbone_args and distill", moved)
    flat_optim = {k: legacy[k] for k in _LEGACY_OPTIM if k in legacy}
    if flat_optim:
        optim = {**plain(group(Optimization, optim)), **flat_optim}
    if legacy.get("teacher"):
        distill = {new: legacy[old] for old, new in _LEGACY_DISTILL.items() if old in legacy}
    known = builder_options(get_builder(backbone))
    flat_backbone = {k: legacy[k] for k in _LEGACY_BACKBONE if k in legacy and k in known}
    if flat_backbone:
        backbone_args = {**flat_backbone, **dict(backbone_args or {})}
    return backbone_args, optim, distill, legacy.get("channels_last")
