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
by the hash), and runs as if given ``--config <that config> --ckpt_path <that checkpoint>``: the
usual ``--data.*`` and ``--trainer.*`` overrides apply. ``pretrained:NAME`` is also accepted
wherever a member checkpoint path is (ensemble members).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import torch

from lightning_fer.checkpoints import UnsafeCheckpointError, safe_load, unsafe_message
from lightning_fer.files import home

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "shipped"
REGISTRY = SHIPPED / "models.json"
FORMAT = "lightning_fer.bundle/1"
#: the subcommands ``--pretrained`` works with
SUBCOMMANDS = ("predict", "test", "validate", "export")
PREFIX = "pretrained:"

__all__ = ["PretrainedError", "UnsafeCheckpointError", "unsafe_message", "describe", "load_bundle", "materialize", "names",
           "pretrained", "registry", "resolve_member", "safe_load", "verified_path"]


class PretrainedError(ValueError):
    """An unknown shipped name, a file whose hash does not match, or a conflicting option."""


def registry() -> dict[str, dict]:
    """The shipped models: name -> what ``models.json`` says of it."""
    if not REGISTRY.is_file():
        return {}
    return json.loads(REGISTRY.read_text(encoding="utf-8"))["models"]


def names() -> list[str]:
    return list(registry())


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
                              "lightning-fer, or write it again with `python benchmarks/ship.py`")
    got = sha256(path)
    if got != entry["sha256"]:
        raise PretrainedError(f"{path}: SHA-256 {got[:16]}... does not match the registry's {entry['sha256'][:16]}... "
                              f"for {name!r}: the file is corrupted or was changed; reinstall lightning-fer")
    return path


def load_bundle(name: str) -> dict:
    """The bundle of a shipped model, hash-checked and loaded with ``weights_only=True``."""
    bundle = safe_load(verified_path(name))
    if bundle.get("format") != FORMAT:
        raise PretrainedError(f"{SHIPPED / registry()[name]['file']}: format {bundle.get('format')!r}, expected {FORMAT}")
    return bundle


def _classifier(ckpt: dict):
    """A FERClassifier from a stripped checkpoint held in memory (through Lightning's own
    loader, as a file would be; float16 weights are cast to the model's float32)."""
    from lightning_fer.models.classifier import FERClassifier

    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    return FERClassifier.load_from_checkpoint(buf, map_location="cpu", weights_only=True)


def pretrained(name: str):
    """The shipped model ``name`` as a LightningModule in eval mode: a ``FERClassifier`` for a
    single member, an ``EnsembleModule`` (members, strategy and its learnt state) for an ensemble.

    Raises:
        PretrainedError: an unknown name (the shipped ones are listed), or a file whose SHA-256
            does not match the registry (named).
    """
    bundle = load_bundle(name)
    if bundle["kind"] == "member":
        return _classifier(bundle["checkpoint"]).eval()
    from lightning_fer import EnsembleModule  # the public name (the ensemble's modules import this one)
    from lightning_fer.ensemble.strategy import strategy_from_spec

    members = [_classifier(c) for c in bundle["members"]]
    ens = EnsembleModule(members, strategy_from_spec(bundle["strategy"]), views=list(bundle["views"]),
                         flip=bool(bundle["flip"]))
    missing, unexpected = ens.load_state_dict(bundle["strategy_state"], strict=False)
    if unexpected:
        raise PretrainedError(f"{name}: the bundle's strategy state has keys the strategy does not: {unexpected[:3]}")
    return ens.eval()


def resolve_member(spec: str | os.PathLike) -> str | os.PathLike:
    """``pretrained:NAME`` -> the path of the shipped member's checkpoint (written out once);
    anything else unchanged."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        name = spec[len(PREFIX):]
        if registry().get(name, {}).get("kind") != "member":
            singles = [n for n, e in registry().items() if e.get("kind") == "member"]
            raise PretrainedError(f"{spec}: not a shipped single model; ensemble members can be {singles}")
        return str(materialize(name)[1])
    return spec


def _home() -> Path:
    return home() / "pretrained"


def materialize(name: str) -> tuple[Path, Path]:
    """The shipped model as files the CLI reads: a config and a checkpoint (and for an
    ensemble, a checkpoint per member), written once under the cache folder in a folder named by
    the bundle's hash (atomically: a kill never leaves half a file). Returns (config, checkpoint)."""
    import yaml

    from lightning_fer.files import save_torch, write_text

    path = verified_path(name)
    entry = registry()[name]
    folder = _home() / f"{name}-{entry['sha256'][:12]}"
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
    data = {"class_path": "lightning_fer.FERDataModule", "init_args": dict(bundle["data"])}
    if bundle["kind"] == "member":
        save_torch(bundle["checkpoint"], ckpt)
        hp = {k: v for k, v in bundle["checkpoint"]["hyper_parameters"].items() if not k.startswith("_")}
        model = {"class_path": "lightning_fer.FERClassifier", "init_args": hp}
    else:
        members = []
        for i, c in enumerate(bundle["members"]):
            members.append(str(save_torch(c, folder / f"{name}.member{i}.ckpt")))
        # The ensemble's whole state (members and learnt strategy), as Lightning restores it.
        state = {k: v for k, v in pretrained(name).state_dict().items()}
        save_torch({"state_dict": state, "pytorch-lightning_version": _pl_version(),
                    "lightning_fer": {"strategy": bundle["strategy"], "views": list(bundle["views"])},
                    "hyper_parameters": {}}, ckpt)
        spec = {k: v for k, v in bundle["strategy"].items() if k != "unsaved"}
        model = {"class_path": "lightning_fer.EnsembleModule",
                 "init_args": {"members": members, "strategy": spec, "views": list(bundle["views"]),
                               "flip": bool(bundle["flip"])}}
    write_text(config, f"# {name}: written from {path} by lightning_fer.zoo.materialize; do not edit\n"
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


def _pl_version() -> str:
    import lightning

    return lightning.__version__


def expand_argv(argv: list[str]) -> list[str]:
    """A CLI call with ``--pretrained NAME`` as the same call with the shipped model's config
    and checkpoint (see :func:`materialize`); other calls unchanged.

    Raises:
        PretrainedError: with ``--ckpt_path`` or ``--config`` as well (which would win is not
            clear), on a subcommand other than :data:`SUBCOMMANDS`, or an unknown name.
    """
    found = [i for i, a in enumerate(argv) if a == "--pretrained" or a.startswith("--pretrained=")]
    if not found:
        return argv
    i = found[0]
    name = argv[i].split("=", 1)[1] if "=" in argv[i] else (argv[i + 1] if i + 1 < len(argv) else "")
    rest = argv[:i] + argv[i + (1 if "=" in argv[i] else 2):]
    if not name:
        raise PretrainedError(f"--pretrained needs a name: one of {names()}")
    sub = rest[0] if rest else ""
    if sub not in SUBCOMMANDS:
        raise PretrainedError(f"--pretrained works with {', '.join(SUBCOMMANDS)}, not {sub or 'no subcommand'!r}")
    given = lambda *opts: any(a == o or a.startswith(o + "=") for a in rest for o in opts)  # noqa: E731
    if sub == "predict" and not given("--data.predict.path", "--data.init_args.predict.path", "--data.root",
                                      "--data.init_args.root") and not any(a in ("-h", "--help") for a in rest):
        raise PretrainedError(f"predict --pretrained {name} needs --data.predict.path PATH: a photo, a video or a "
                              "folder of them (or --data.root to predict on the test split of the data it learnt from)")
    for option in ("--ckpt_path", "--config"):
        if any(a == option or a.startswith(option + "=") for a in rest):
            raise PretrainedError(f"--pretrained {name} brings its own config and checkpoint: drop {option} "
                                  f"(or drop --pretrained and pass --config and --ckpt_path yourself)")
    config, ckpt = materialize(name)
    log.info("--pretrained %s: %s", name, registry()[name]["what"])
    return [sub, "--config", str(config), "--ckpt_path", str(ckpt), *rest[1:]]


def describe() -> str:
    """The ``pretrained`` subcommand's listing: every shipped model, what it is, what it learnt
    from, its recipe, its measured figures, its size, and the data licence."""
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
                  f"  licence:  {e['licence']}", ""]
    return "\n".join(lines).rstrip() + "\n"
