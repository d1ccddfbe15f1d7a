"""Saved classifier options of earlier versions, in the current layout: what
:meth:`FERClassifier.on_load_checkpoint <lightning_fer.FERClassifier.on_load_checkpoint>`, the
command line's ``--ckpt_path`` and the shipped models' configs read old checkpoints through."""

from __future__ import annotations

from lightning_fer.models.registry import builder_options, get_builder

#: 0.1 and 0.2's flat options, by the group that holds them now (``backbone_args``: the
#: builder's options, kept where the builder takes them).
_OPTIM = ("optimizer", "lr", "weight_decay", "scheduler", "cycles", "warmup")
_DISTILL = {"teacher": "teacher", "distill_weight": "weight", "distill_temperature": "temperature"}
_BACKBONE = ("spp_levels", "spp_trunk", "spp_hidden", "dropout", "stem")
#: 0.3's: the loss options, and ``pretrained`` (now a builder option, in ``backbone_args``)
_LOSS = ("label_smoothing", "class_weights", "aux_weight")
#: options that no longer exist and are dropped (the fast path sets the memory format)
_DROPPED = ("channels_last", "compile")
#: FERClassifier's options now
CURRENT = ("backbone", "backbone_args", "num_classes", "class_names", "image_size", "region", "in_channels", "optim",
           "loss", "mix", "tta", "distill")


def current_options(saved: dict) -> tuple[dict, list[str]]:
    """A FERClassifier's saved options (a checkpoint's ``hyper_parameters``) in the current layout,
    and the old names that were moved (empty: already current). Names starting with ``_``
    (Lightning's) are kept as they are.

    Example:
        >>> opts, moved = current_options({"backbone": "resnet18", "lr": 0.05, "label_smoothing": 0.1,
        ...                                "pretrained": None, "stem": "small_pool"})
        >>> opts["optim"], opts["loss"], opts["backbone_args"], moved
        ({'lr': 0.05}, {'label_smoothing': 0.1}, {'stem': 'small_pool'}, ['label_smoothing', 'lr', 'pretrained', 'stem'])

    Raises:
        TypeError: a name no version of FERClassifier took (named).
    """
    private = {k: v for k, v in saved.items() if k.startswith("_")}
    opts = {k: v for k, v in saved.items() if not k.startswith("_")}
    old = sorted(set(opts) - set(CURRENT))
    unknown = sorted(set(old) - set(_OPTIM) - set(_DISTILL) - set(_BACKBONE) - set(_LOSS) - {"pretrained"}
                     - set(_DROPPED))
    if unknown:
        raise TypeError(f"FERClassifier options {unknown} are unknown; its options are {list(CURRENT)} (0.2's flat "
                        "lr, optimizer, spp_levels, teacher moved into optim, backbone_args and distill; 0.3's "
                        "label_smoothing, class_weights, aux_weight into loss, pretrained into backbone_args: see "
                        "CHANGELOG.md)")
    if not old:
        return saved, []
    flat = {k: opts.pop(k) for k in old}
    optim = {k: flat[k] for k in _OPTIM if k in flat}
    if optim:
        opts["optim"] = {**dict(opts.get("optim") or {}), **optim}
    loss = {k: flat[k] for k in _LOSS if k in flat}
    if loss:
        opts["loss"] = {**loss, **dict(opts.get("loss") or {})}
    if flat.get("teacher"):
        opts["distill"] = {new: flat[old_] for old_, new in _DISTILL.items() if old_ in flat}
    known = builder_options(get_builder(opts.get("backbone", "resnet50")))
    builder = {k: flat[k] for k in _BACKBONE if k in flat and k in known}
    if flat.get("pretrained"):
        builder["pretrained"] = flat["pretrained"]
    if builder:
        opts["backbone_args"] = {**builder, **dict(opts.get("backbone_args") or {})}
    return {**private, **opts}, old
