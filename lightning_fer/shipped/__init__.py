"""The shipped models' registry: names, hash-checked bundle files, and their cached copies as files.

Each shipped model is one file here (a *bundle*), listed in ``models.json`` with its SHA-256. This
module reads them and writes a bundle out once as the ordinary files the CLI reads (a config and
checkpoints, under the library's cache folder, keyed by the hash). It builds no ensemble, so the
ensemble package can resolve ``pretrained:NAME`` members through it without an import cycle;
:mod:`lightning_fer.zoo` builds the models themselves, and ``benchmarks/ship.py`` writes bundles.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from lightning_fer.checkpoints import safe_load
from lightning_fer.files import home, save_torch, write_text

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent
REGISTRY = SHIPPED / "models.json"
FORMAT = "lightning_fer.bundle/1"
PREFIX = "pretrained:"

__all__ = ["FORMAT", "PREFIX", "PretrainedError", "bf16_checked", "cached_copy", "classifier", "int8_for", "load_bundle", "names", "registry",
           "resolve_member", "sha256", "verified_path"]


class PretrainedError(ValueError):
    """An unknown shipped name, a file whose hash does not match, or a conflicting option."""


def registry() -> dict[str, dict]:
    """The shipped models: name -> what ``models.json`` says of it."""
    if not REGISTRY.is_file():
        return {}
    return json.loads(REGISTRY.read_text(encoding="utf-8"))["models"]


def names() -> list[str]:
    return list(registry())


def bf16_checked(name: str) -> tuple[bool, str]:
    """Whether the shipped model ``name`` may run in bf16 (``fast_path: auto`` on a CPU with bf16
    units or a GPU): its ``bf16`` record in ``models.json`` (PublicTest under bf16 autocast against
    float32, measured when it was shipped) lost at most :data:`~lightning_fer.quantize.MAX_LOSS`
    points; and why, in words."""
    from lightning_fer.quantize import passes

    return passes(registry().get(name, {}).get("bf16"), "bf16")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_path(name: str) -> Path:
    """The bundle file of ``name``, after its SHA-256 is checked against the registry."""
    reg = registry()
    if name not in reg:
        raise PretrainedError(f"--pretrained {name!r}: no shipped model of that name; shipped: {sorted(reg)} "
                              "(python -m lightning_fer pretrained lists them)")
    entry = reg[name]
    path = SHIPPED / entry["file"]
    if not path.is_file():
        raise PretrainedError(f"{path}: the shipped model {name!r} is missing from the installed package; reinstall "
                              "lightning-fer, or write it again with `python -m benchmarks.ship`")
    got = sha256(path)
    if got != entry["sha256"]:
        raise PretrainedError(f"{path}: SHA-256 {got[:16]}... does not match the registry's {entry['sha256'][:16]}... "
                              f"for {name!r}: the file is corrupted or was changed; reinstall lightning-fer")
    return path


def load_bundle(name: str) -> dict:
    """The bundle of a shipped model, hash-checked and loaded with ``weights_only=True``; its data
    options in the current layout (:func:`~lightning_fer.data.legacy.current_data_options`)."""
    from lightning_fer.data.legacy import current_data_options

    bundle = safe_load(verified_path(name))
    if bundle.get("format") != FORMAT:
        raise PretrainedError(f"{SHIPPED / registry()[name]['file']}: format {bundle.get('format')!r}, expected {FORMAT}")
    bundle["data"] = current_data_options(dict(bundle.get("data") or {}))[0]
    return bundle


def classifier(ckpt: dict):
    """A FERClassifier from a stripped checkpoint held in memory (through Lightning's own
    loader, as a file would be; float16 weights are cast to the model's float32)."""
    from lightning_fer.models.classifier import FERClassifier

    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    return FERClassifier.load_from_checkpoint(buf, map_location="cpu", weights_only=True)


#: the layout of the cached copies' configs (2: a classifier's ``loss`` group; 3: the data module's
#: ``folds``, ``records`` and ``loader`` groups; both 0.4)
CACHE_LAYOUT = "v3"

#: writes a bundle's files into a folder: (name, bundle, folder, config, checkpoint) -> the model's config mapping
Writer = Callable[[str, dict, Path, Path, Path], dict]


def _write_member(name: str, bundle: dict, folder: Path, config: Path, ckpt: Path) -> dict:
    save_torch(bundle["checkpoint"], ckpt)
    from lightning_fer.models.legacy import current_options

    hp = current_options(bundle["checkpoint"]["hyper_parameters"])[0]  # a bundle of an earlier version too
    return {"class_path": "lightning_fer.FERClassifier", "init_args": {k: v for k, v in hp.items() if not k.startswith("_")}}


def cached_copy(name: str, write_ensemble: Writer | None = None) -> tuple[Path, Path]:
    """The shipped model as files the CLI reads: a config and a checkpoint (and for an ensemble,
    a checkpoint per member, written by ``write_ensemble``), written once under the cache folder in
    a folder named by the bundle's hash. Every file's SHA-256 is listed last in ``files.json`` and
    checked on every use: a changed, cut or half-written copy is written again. Returns (config,
    checkpoint)."""
    import yaml

    path = verified_path(name)
    entry = registry()[name]
    # The copy's layout (CACHE_LAYOUT) names the folder too: a copy written by an earlier version,
    # in options that version took, is not read by this one.
    folder = home() / "pretrained" / f"{name}-{entry['sha256'][:12]}-{CACHE_LAYOUT}"
    config, ckpt = folder / f"{name}.yaml", folder / f"{name}.ckpt"
    manifest = folder / "files.json"
    broken = _broken_files(folder, manifest)
    if not broken:
        return config, ckpt
    if not manifest.is_file() and (config.exists() or ckpt.exists()):
        log.info("--pretrained %s: the cached copy in %s was written without a list of its files' hashes: written "
                 "again with one", name, folder)
    elif manifest.is_file():
        log.warning("--pretrained %s: the cached copy in %s is broken (%s): written again from the bundle",
                    name, folder, broken)
    bundle = safe_load(path)
    if bundle["kind"] == "member":
        model = _write_member(name, bundle, folder, config, ckpt)
    elif write_ensemble is None:
        raise PretrainedError(f"{name}: an ensemble; use lightning_fer.zoo.materialize({name!r})")
    else:
        model = write_ensemble(name, bundle, folder, config, ckpt)
    from lightning_fer.data.legacy import current_data_options

    data = {"class_path": "lightning_fer.FERDataModule", "init_args": current_data_options(dict(bundle["data"]))[0]}
    write_text(config, f"# {name}: written from {path} by lightning_fer; do not edit\n"
               + yaml.safe_dump({"model": model, "data": data}, sort_keys=False))
    files = sorted(f for f in folder.iterdir() if f.suffix in (".ckpt", ".yaml"))
    write_text(manifest, json.dumps({f.name: sha256(f) for f in files}, indent=1))  # last: the copy is whole
    return config, ckpt


def _broken_files(folder: Path, manifest: Path) -> str | None:
    """Why the cached copy in ``folder`` cannot be used (``None``: every file it lists is there
    with its SHA-256): it is checked on every use, as the bundle is."""
    if not manifest.is_file():
        return "no list of its files" if folder.exists() else "not written yet"
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its list of files cannot be read"
    for file, digest in listed.items():
        f = folder / file
        if not f.is_file():
            return f"{file} is missing"
        if sha256(f) != digest:
            return f"{file} was changed or cut (SHA-256 differs)"
    return None


def resolve_member(spec: str | os.PathLike) -> str | os.PathLike:
    """``pretrained:NAME`` -> the path of the shipped member's checkpoint (written out once);
    anything else unchanged."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        name = spec[len(PREFIX):]
        if registry().get(name, {}).get("kind") != "member":
            singles = [n for n, e in registry().items() if e.get("kind") == "member"]
            raise PretrainedError(f"{spec}: not a shipped single model; ensemble members can be {singles}")
        return str(cached_copy(name)[1])
    return spec


def int8_for(key: str) -> tuple[Path, dict] | None:
    """The shipped int8 version of the exported model named ``key`` (the export's file stem, a hash
    of the model's weights and input shape), hash-checked, with its ``models.json`` record of the
    ship-time accuracy check (:mod:`lightning_fer.quantize`); ``None`` where none was shipped."""
    for name, entry in registry().items():
        int8 = entry.get("int8")
        if int8 and int8.get("key") == key:
            path = SHIPPED / int8["file"]
            if not path.is_file() or sha256(path) != int8["sha256"]:
                raise PretrainedError(f"{path}: the int8 version of {name!r} is missing or its SHA-256 does not match "
                                      "the registry's: reinstall lightning-fer, or use --data.predict.runtime onnx")
            return path, int8
    return None
