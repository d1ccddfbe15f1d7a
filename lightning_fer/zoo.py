"""Shipped models: expression models trained by the library, inside the package, used by name.

    python -m lightning_fer pretrained                              # what ships, and how it was measured
    python -m lightning_fer predict --pretrained fer2013 --data.predict.path photo.jpg
    python -m lightning_fer test --pretrained fer2013 --data.root /path/to/fer2013

    >>> import lightning_fer
    >>> model = lightning_fer.pretrained("fer2013")      # a FERClassifier, in eval mode

Each shipped model is one file under ``lightning_fer/shipped/`` (a *bundle*: the member
checkpoints without optimiser state, weights in float16, and for an ensemble its strategy and
learnt state), listed in ``lightning_fer/shipped/models.json`` with its SHA-256, what it is, the
data and recipe it came from and its measured figures. Every load checks the hash first (a
corrupted or changed file is refused, naming it) and reads the file with ``weights_only=True``.
``benchmarks/ship.py`` writes the bundles and the registry, and can be rerun to reproduce them.

The CLI's ``--pretrained NAME`` (``predict``, ``test``, ``validate``, ``export``) writes the
bundle out once, as ordinary checkpoints and a config (under the library's cache folder, keyed
by the hash, :func:`materialize`); the parser merges that config where ``--pretrained`` stands and
takes its checkpoint as ``ckpt_path``: the usual ``--data.*`` and ``--trainer.*`` overrides after
it apply. ``pretrained:NAME`` is also accepted
wherever a member checkpoint path is (ensemble members).

The registry and the files are :mod:`lightning_fer.shipped`'s; this module builds the models.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightning_fer.shipped import (
    FORMAT,
    PREFIX,
    REGISTRY,
    SHIPPED,
    PretrainedError,
    bf16_checked,
    cached_copy,
    classifier,
    load_bundle,
    names,
    registry,
    resolve_member,
    sha256,
    verified_path,
)

log = logging.getLogger(__name__)

#: the subcommands ``--pretrained`` works with
SUBCOMMANDS = ("predict", "test", "validate", "export")

__all__ = ["FORMAT", "PREFIX", "REGISTRY", "SHIPPED", "PretrainedError", "describe", "load_bundle",
           "materialize", "names", "pretrained", "registry", "resolve_member", "sha256", "verified_path"]


def pretrained(name: str):
    """The shipped model ``name`` as a LightningModule in eval mode: a ``FERClassifier`` for a
    single member, an ``EnsembleModule`` (members, strategy and its learnt state) for an ensemble.

    Raises:
        PretrainedError: an unknown name (the shipped ones are listed), or a file whose SHA-256
            does not match the registry (named).
    """
    bundle = load_bundle(name)
    if bundle["kind"] == "member":
        return classifier(bundle["checkpoint"]).eval()
    from lightning_fer.ensemble.module import EnsembleModule
    from lightning_fer.ensemble.strategy import strategy_from_spec

    members = [classifier(c) for c in bundle["members"]]
    ens = EnsembleModule(members, strategy_from_spec(bundle["strategy"]), views=list(bundle["views"]),
                         flip=bool(bundle["flip"]))
    missing, unexpected = ens.load_state_dict(bundle["strategy_state"], strict=False)
    if unexpected:
        raise PretrainedError(f"{name}: the bundle's strategy state has keys the strategy does not: {unexpected[:3]}")
    return ens.eval()


def _write_ensemble(name: str, bundle: dict, folder: Path, config: Path, ckpt: Path) -> dict:
    """An ensemble's cached files: a checkpoint per member and the ensemble's whole state
    (members and learnt strategy) as Lightning restores it; returns the model's config."""
    import lightning

    from lightning_fer.files import save_torch

    members = [str(save_torch(c, folder / f"{name}.member{i}.ckpt")) for i, c in enumerate(bundle["members"])]
    save_torch({"state_dict": dict(pretrained(name).state_dict()), "pytorch-lightning_version": lightning.__version__,
                "lightning_fer": {"strategy": bundle["strategy"], "views": list(bundle["views"])},
                "hyper_parameters": {}}, ckpt)
    spec = {k: v for k, v in bundle["strategy"].items() if k != "unsaved"}
    return {"class_path": "lightning_fer.EnsembleModule",
            "init_args": {"members": members, "strategy": spec, "views": list(bundle["views"]),
                          "flip": bool(bundle["flip"])}}


def materialize(name: str) -> tuple[Path, Path]:
    """The shipped model as files the CLI reads, written once and hash-checked on every use
    (:func:`lightning_fer.shipped.cached_copy`). Returns (config, checkpoint)."""
    return cached_copy(name, _write_ensemble)


def _speed(s: dict | None) -> str:
    """A shipped model's measured speed, as ``pretrained`` says it (``benchmarks/ship.py --speed``)."""
    if not s:
        return "not measured (python -m benchmarks.ship --speed NAME)"
    return (f"{s['faces_per_s']:.0f} faces/s on one thread, pre-cropped faces through lightning_fer.analyze "
            f"(runtime {s['runtime']}; {s['measured_on']})")


def describe() -> str:
    """The ``pretrained`` subcommand's listing: every shipped model, what it is, what it learnt
    from, its recipe, its measured figures, its size, its speed, and the data licence."""
    reg = registry()
    if not reg:
        return "no shipped models in this installation (lightning_fer/shipped/models.json is missing)"
    lines = []
    for name, e in reg.items():
        fig = e.get("publictest") or {}
        lines += [f"{name}", f"  what:     {e['what']}", f"  data:     {e['data']}",
                  f"  recipe:   {e['recipe']} (commit {e.get('commit', '?')})",
                  f"  measured: {fig.get('acc', float('nan')):.1f}% accuracy, {fig.get('f1', float('nan')):.1f}% macro F1 on "
                  f"{fig.get('split', 'FER2013 PublicTest, duplicates dropped')}",
                  f"  size:     {e['bytes'] / 1e6:.1f} MB ({e['file']}, sha256 {e['sha256'][:16]}...)",
                  f"  speed:    {_speed(e.get('speed'))}",
                  f"  licence:  {e['licence']}", ""]
    return "\n".join(lines).rstrip() + "\n"
