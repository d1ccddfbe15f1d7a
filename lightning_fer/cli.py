"""The command line: ``python -m lightning_fer SUBCOMMAND [options]``, one parser.

The parser is :class:`~lightning_fer.command_line.CommandLine`'s: the ``FERCLI`` of
:mod:`lightning_fer.build` (a LightningCLI in subclass mode for model and data) with the library's
tools beside Trainer's four subcommands (``cv``, ``export``, ``pretrained`` and ``serve``, their options
typed and checked as every other). This module answers ``--help`` without importing torch or
Lightning, and says a user's error in one line. Nothing imports it back.
"""

from __future__ import annotations

import logging
import os
import sys

USAGE = """usage: python -m lightning_fer [-h] {fit,validate,test,predict,cv,export,pretrained,serve} --config FILE [--section.key=value ...]
       python -m lightning_fer {predict,test,validate,export} --pretrained NAME [--section.key=value ...]

Facial expression recognition with PyTorch Lightning and pluggable ensembles.

subcommands:
  fit        train a model (a FERClassifier on one backbone, or an ensemble)
  validate   evaluate a checkpoint on the validation split
  test       evaluate a checkpoint on the test split
  predict    class probabilities for the test split, or for every face in photos (--data.predict.path)
  cv         cross-validated training of several members, out-of-fold stacking, Table II
  export     a member or an ensemble to TorchScript or ONNX, checked against eager outputs
  pretrained list the shipped models (use one with --pretrained NAME instead of --config and --ckpt_path)
  serve      a web page and a JSON API on a shipped model (pip install "lightning-fer[serve]")

examples:
  python -m lightning_fer fit --config configs/demo/resnet50.yaml
  python -m lightning_fer fit --config configs/demo/resnet50.yaml --model.optim.lr=0.01 --trainer.max_epochs=3
  python -m lightning_fer test --config configs/demo/resnet50.yaml --ckpt_path runs/demo/resnet50/checkpoints/best.ckpt
  python -m lightning_fer fit --config configs/demo/resnet50.yaml --print_config
  python -m lightning_fer cv --config configs/demo/cv.yaml
  python -m lightning_fer test --config configs/demo/ensemble_hard.yaml
  python -m lightning_fer predict --pretrained fer2013 --data.predict.path photo.jpg

'python -m lightning_fer SUBCOMMAND --help' lists every option.
"""


def main(args: list[str] | None = None, run: bool = True):
    """Run the CLI; ``args`` as on the command line (``None``: ``sys.argv[1:]``). Returns the
    :class:`CommandLine` (fit, validate, test, predict) or what a tool returned (cv, export).

    With ``run=False`` the configured objects are built and returned, not run (a leading
    subcommand in ``args`` is dropped).
    """
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)  # answered without importing torch or lightning
        return None
    _setup_logging()
    if argv[0] == "predict" and any(a.split("=")[0] in ("--data.predict.help", "--data.init_args.predict.help")
                                    for a in argv[1:]):
        print(PREDICT_HELP.rsplit("\n\nevery option", 1)[0])
        return None
    if argv[0] == "predict" and any(a in ("-h", "--help") for a in argv[1:]):
        print(PREDICT_HELP)  # its own options first; LightningCLI's full list follows
    try:
        from lightning_fer.command_line import TOOLS, TRAINER, make_cli, make_command_line

        if not run:
            return make_cli(argv[1:] if argv[0] in TRAINER else argv, run=False, exit_on_error=args is not None)
        cli = make_command_line(argv, exit_on_error=args is not None)
        return cli.result if cli.subcommand in TOOLS else cli
    except Exception as err:
        one_line = _one_line(err, argv)
        if one_line is None or args is not None or os.environ.get(TRACEBACK_ENV):  # from Python: the caller handles it
            raise
        print(f"error: {one_line} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


#: Set (to anything) to see the traceback of a user error instead of its one line.
TRACEBACK_ENV = "LIGHTNING_FER_TRACEBACK"

PREDICT_HELP = """predict: label every face in photos and videos (or the test split of --config's data)

  python -m lightning_fer predict --pretrained NAME --data.predict.path PATH [options]
  python -m lightning_fer predict --config FILE --ckpt_path CKPT --data.predict.path PATH [options]

its own options (all under --data.predict., also written --data.init_args.predict.):
  --pretrained NAME               a shipped model (python -m lightning_fer pretrained lists them)
  --data.predict.path PATH        a photo, a video, or a folder of them (searched recursively)
  --data.predict.output FILE      rows to this .csv or .json (default runs/predict/predictions.csv),
                                  written afresh each run: a row per face, and per input without one
  --data.predict.annotate_dir DIR copies with boxes and labels, at the inputs' relative paths
  --data.predict.min_face_prob P  MTCNN probability a face needs (default 0.9)
  --data.predict.runtime MODE     auto, eager, onnx or int8 (default auto: the fastest checked one)
  --data.predict.video.fps F      frames per second to look at in videos (default: every frame)
  --data.predict.video.smooth N   average each track over N looked-at frames (default 1)
  --data.face_box image           every photo is one face (pre-cropped faces): no detector

exit status: 0 when the rows were written (inputs without a face, or unreadable, are rows with an
'error'); 2 for a user error (a missing path, an unknown option, a bad value or config), said in one
line; set LIGHTNING_FER_TRACEBACK=1 to see its traceback.

every option of the run follows:
"""


def _one_line(err: BaseException, argv: list[str]) -> str | None:
    """What to say in one line, without a traceback, for the errors a user makes: a missing
    member or predict path, a shipped model's problem, a checkpoint the weights-only loader
    refuses (as ``--ckpt_path``, named from the command line, or as a member), an option or
    value the parser refuses, a YAML file the safe loader refuses."""
    import argparse
    import pickle

    import yaml

    from lightning_fer.checkpoints import UnsafeCheckpointError, unsafe_message
    from lightning_fer.cv.jobs import JobError
    from lightning_fer.ensemble.module import MemberNotFoundError
    from lightning_fer.options import OptionError
    from lightning_fer.predict.inputs import PredictInputError
    from lightning_fer.shipped import PretrainedError

    for kind in (MemberNotFoundError, PretrainedError, UnsafeCheckpointError, JobError, PredictInputError, OptionError):
        found = _cause(err, kind)
        if found is not None:
            return str(found)
    refused_yaml = _cause(err, yaml.YAMLError)
    if refused_yaml is not None:
        mark = getattr(refused_yaml, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a config"
        what = getattr(refused_yaml, "problem", None) or str(refused_yaml).splitlines()[0]
        return (f"{_config_named(argv) or where}: YAML refused by the safe loader ({what}, {where}): configs hold plain "
                "values (no Python tags)")
    parse = _cause(err, argparse.ArgumentError)
    if parse is not None or (isinstance(err, ValueError) and str(err).startswith("Does not validate")):
        return _parser_line(str(parse or err), argv)
    refused = _cause(err, pickle.UnpicklingError)
    if refused is not None:
        ckpt = next((a.split("=", 1)[1] if "=" in a else argv[i + 1] for i, a in enumerate(argv)
                     if a.startswith("--ckpt_path") and (("=" in a) or i + 1 < len(argv))), "the checkpoint")
        return unsafe_message(ckpt, refused)
    return None


_BOILERPLATE = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a",
                "Problem with given class_path", "- Expected a")


def _parser_line(message: str, argv: list[str]) -> str:
    """One line from jsonargparse's nested message: an unknown option named as it was typed (with
    the accepted ones nearby), else the innermost reason."""
    import difflib
    import re

    unknown = re.search(r"Option '([^']+)' is not accepted", message) or re.search(r"Key '([^']+)' is not expected", message)
    if unknown:
        key = unknown.group(1)
        typed = next((a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0].endswith("." + key)),
                     f"{key} (in a config)")
        from lightning_fer.data.legacy import MOVED
        from lightning_fer.predict.inputs import PredictOptions

        near = difflib.get_close_matches(key, list(PredictOptions.__dataclass_fields__), n=1)
        hint = f" (did you mean {typed.rsplit('.', 1)[0]}.{near[0]}?)" if near and ".predict." in typed else ""
        if key in MOVED and re.fullmatch(r"--data(\.init_args)?\.\w+|\w+ \(in a config\)", typed):
            hint = f" (0.4 moved it: data.{'.'.join(MOVED[key])})"
        return f"{typed}: unknown option{hint}; 'python -m lightning_fer {argv[0]} --help' lists them"
    lines = [ln.strip().lstrip("- ").strip() for ln in message.splitlines()]
    useful = [ln for ln in lines if ln and not ln.startswith(_BOILERPLATE)]
    key, given = re.search(r'Parser key "([^"]+)"', message), re.search(r"(?:Given|Got) value: (.*)", message)
    if not useful and key and given:  # a value no type of the option takes: say which it was and what is
        expected = ", ".join(re.findall(r"Expected an? (.*?)(?:\. Got value.*)?$", message, re.M)).replace("typing.", "")
        expected = expected.replace("<class 'NoneType'>", "null")
        return f"--{key[1]}: {given[1].strip()!r} is not accepted (expected {expected})"
    return useful[0] if useful else lines[0]


def _config_named(argv: list[str]) -> str | None:
    return next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)


def _cause(err: BaseException | None, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in ``err``'s chain of causes."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _setup_logging() -> None:
    import logging
    import os

    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import warnings

    # Lightning 2.6 on torch >= 2.10 warns about its own use of torch's pytree API, once per
    # data loader; nothing a user of this CLI can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Our reports (images checked, landmark kinds, splits, skipped files) at INFO, as Lightning's.
    pkg_log = logging.getLogger("lightning_fer")
    if not pkg_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[lightning_fer] %(message)s"))
        pkg_log.addHandler(handler)
        pkg_log.setLevel(logging.INFO)
