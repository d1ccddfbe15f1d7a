"""One path from configuration to objects: :func:`build` and the ``FERCLI`` it runs on.

The command line (``cli``), ``cv``, ``export`` and the benchmarks all make their models, data
modules and trainers here, from YAML files and overrides that the same parser checks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import yaml
from lightning.pytorch.cli import LightningCLI

from lightning_fer.data.datamodule import FERDataModule
from lightning_fer.fastpath import apply, choose

log = logging.getLogger(__name__)

Override = Mapping[str, Any] | Sequence[str]


@dataclass(frozen=True)
class _Request:
    """Config files and overrides for :meth:`FERCLI.parse_arguments`."""

    configs: tuple[str, ...]
    overrides: tuple[Override, ...]


class FERCLI(LightningCLI):
    """LightningCLI with the data -> model links, a test run after ``fit``, the prediction
    writer for photos, and structured overrides (see :func:`build`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="after fit, test the best checkpoint and print the figures",
        )
        parser.add_argument(
            "--fast_path", type=Literal["auto", "on", "off"], default="auto",
            help="mixed precision and channels-last where the hardware has units for them (auto: GPUs, CPUs "
                 "with amx_bf16/avx512_bf16; float32 elsewhere); on/off force it. An explicit "
                 "trainer.precision or --channels_last wins.",
        )
        parser.add_argument(
            "--channels_last", type=bool | None, default=None,
            help="run the model in the channels-last memory format (default: as --fast_path chooses)",
        )
        parser.add_argument(
            "--compile", type=bool, default=False,
            help="run the backbone(s) through torch.compile (the first steps pay the compilation)",
        )
        parser.link_arguments("data.init_args.image_size", "model.init_args.image_size")
        # The classes only: a classifier counts them (an ensemble takes its members'), so one link
        # serves every model.
        parser.link_arguments("data.class_names", "model.init_args.class_names", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        if not isinstance(args, _Request):
            if args is None or isinstance(args, (list, tuple)):
                args = null_in_groups(expand_bases(list(sys.argv[1:] if args is None else args)))
            return super().parse_arguments(parser, args)
        # One parse, as on the command line, so that omegaconf interpolations (an ensemble's
        # ``views: ${data.init_args.views}``) see every override; a dict goes in as a config
        # string (JSON), which the parser merges and checks as it does a config file.
        argv = expand_bases([a for c in args.configs for a in ("--config", c)])
        for override in args.overrides:
            argv += ["--config", json.dumps(dict(override))] if isinstance(override, Mapping) else list(override)
        self.config = parser.parse_args(null_in_groups(argv))

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads a ``--ckpt_path``'s saved options as config; a classifier's options of an
        earlier version are moved into their groups first
        (:func:`~lightning_fer.models.legacy.current_options`), so that old checkpoints still test,
        predict and resume."""
        import torch

        from lightning_fer.models.legacy import current_options

        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        hparams = dict(torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters") or {})
        class_path = hparams.pop("_class_path", None)
        hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
        if not hparams:
            return
        if str(class_path).rsplit(".", 1)[-1] == "FERClassifier":
            hparams = current_options(hparams)[0]
        model = {"class_path": class_path, "init_args": hparams} if class_path else hparams
        try:
            self.config = self.parser.parse_object({sub: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write(f"Parsing of the options saved in --ckpt_path {ckpt_path} failed\n")
            raise

    def before_instantiate_classes(self) -> None:
        """Apply the fast path where the config leaves precision and memory format open."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        fp = choose(cfg.get("fast_path", "auto"), cfg.trainer.get("accelerator"))
        chosen = []
        if cfg.trainer.get("precision") is None:
            cfg.trainer.precision = fp.precision
            chosen.append(f"precision {fp.precision}")
        if self.subcommand == "predict":
            # predict writes its rows where --data.predict.output says; it leaves no logger folder
            # (lightning_logs/version_N) and no saved config in the working directory.
            cfg.trainer.logger = False
            self.save_config_callback = None
        init = cfg.model.get("init_args")
        data_init = cfg.data.get("init_args") if cfg.get("data") is not None else None
        channels = data_init.get("channels") if data_init is not None else None
        if init is not None and "num_classes" in init and cfg.get("data") is not None:
            # The data's classes decide (linked as class_names): a saved config's num_classes is
            # the training data's count, which another data set need not share.
            init.num_classes = None
        if init is not None and "in_channels" in init and channels is not None and init.in_channels != channels:
            # data.channels is said once, in the data; the classifier follows it as it follows num_classes.
            init.in_channels = channels
        self._fast_path, self._fast_path_chosen = fp, chosen

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        fp = getattr(self, "_fast_path", None) or choose(cfg.get("fast_path", "auto"), cfg.trainer.get("accelerator"))
        chosen = getattr(self, "_fast_path_chosen", []) + apply(self.model, fp, cfg.get("channels_last"),
                                                                   bool(cfg.get("compile")))
        if chosen:
            log.info("fast path (%s): %s", fp.reason, ", ".join(chosen))

    def before_predict(self) -> None:
        from lightning_fer.predict.writers import FacePredictionWriter

        options = getattr(self.datamodule, "predict_options", None)
        if options is not None:
            Path(options.output).unlink(missing_ok=True)  # a failed run leaves no old rows behind either
        if options is not None and not any(isinstance(c, FacePredictionWriter) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(FacePredictionWriter.from_options(options))
        if options is not None:
            from lightning_fer.predict.runtimes import OnnxPredict

            ckpt = self.config[self.subcommand].get("ckpt_path")
            where = Path(ckpt).parent / "onnx" if ckpt and ckpt not in ("best", "last") else None
            self.trainer.callbacks.append(OnnxPredict(options.runtime, where))

    def after_predict(self) -> None:
        """Where no input gave a face Lightning runs no prediction loop: the writer still writes a
        row per input (with its reason) and the summary line."""
        from lightning_fer.predict.writers import FacePredictionWriter

        for writer in (c for c in self.trainer.callbacks if isinstance(c, FacePredictionWriter)):
            writer.finish_without_faces(self.trainer, self.model)

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit"):
            ckpt = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


#: The key of a config file that names the config(s) it extends, relative to its own folder.
BASE_KEY = "base"


def config_layers(path: str | os.PathLike, _seen: tuple = ()) -> list[tuple[Path, dict]]:
    """The layers of a config file: its ``base`` configs' layers (recursively, in order), then
    its own mapping without the ``base`` key.

    Example:
        >>> [p.name for p, _ in config_layers("configs/fer2013/resnet18.yaml")]
        ['trainer.yaml', 'resnet18.yaml']
    """
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or BASE_KEY not in data:
        return [(path, data)]
    bases = data.pop(BASE_KEY)
    layers = []
    for base in [bases] if isinstance(bases, str) else list(bases or []):
        found = (path.parent / base).resolve()
        if not found.is_file():
            raise FileNotFoundError(f"{path}: base config {base!r} not found (looked for {found})")
        if found in _seen:
            raise ValueError(f"{path}: base configs form a loop through {found}")
        layers += config_layers(found, (*_seen, found))
    return [*layers, (path, data)]


def expand_bases(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config FILE`` whose file names a ``base`` replaced by the base
    files and then the file's own settings (LightningCLI merges repeated ``--config`` in order,
    later ones winning; lists, such as callbacks, are replaced, not merged)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        value, step = (argv[i + 1], 2) if arg == "--config" and i + 1 < len(argv) else (
            (arg.split("=", 1)[1], 1) if arg.startswith("--config=") else (None, 1))
        if value is not None and value.endswith((".yaml", ".yml")) and Path(value).is_file():
            layers = config_layers(value)
            if len(layers) > 1:
                for path, data in layers[:-1]:
                    out += ["--config", str(path)] if BASE_KEY not in (yaml.safe_load(path.read_text()) or {}) \
                        else ["--config", json.dumps(data)]
                out += ["--config", json.dumps(layers[-1][1])]
                i += step
                continue
        out += argv[i:i + step]
        i += step
    return out


#: the data module's option groups that are plain dataclasses (a union such as ``landmarks``, which
#: also takes a mode's name, would lose the name's meaning in a mapping)
_GROUP_NULL = re.compile(r"--(data(?:\.init_args)?\.(?:folds|records|loader|training))\.(\w+)")


def null_in_groups(argv: list[str]) -> list[str]:
    """``argv`` with ``--data.records.cache_dir=null`` (a field of a data option group set to null)
    as ``--data.records={cache_dir: null}``: jsonargparse 4.53 reads the first as the string
    ``'None'``, or refuses it for a mapping; the second merges into the group as a config does.

    Example:
        >>> null_in_groups(["--data.init_args.records.split_map=null", "--data.root", "null", "--data.folds.fold", "null"])
        ['--data.init_args.records={split_map: null}', '--data.root', 'null', '--data.folds={fold: null}']
    """
    out, i = [], 0
    while i < len(argv):
        key, eq, value = argv[i].partition("=")
        spaced = not eq and i + 1 < len(argv) and argv[i + 1] == "null"
        found = _GROUP_NULL.fullmatch(key)
        if found and (value == "null" or spaced):
            out.append(f"--{found[1]}={{{found[2]}: null}}")
            i += 2 if spaced else 1
        else:
            out.append(argv[i])
            i += 1
    return out


def make_cli(args: Any, run: bool = True, exit_on_error: bool = True, cls: type[FERCLI] | None = None) -> FERCLI:
    """The ``FERCLI`` (or ``cls``) over ``args`` (argv strings, a dict or a :func:`build` request)."""
    import warnings

    with warnings.catch_warnings():
        # cv, export and tests run the CLI from Python on purpose: LightningCLI's advice against
        # that is about user scripts, and would be printed on every call the library makes.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return (cls or FERCLI)(
            L.LightningModule,
            FERDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_kwargs={"parser_mode": "omegaconf+", "exit_on_error": exit_on_error},
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )


@dataclass
class Built:
    """What :func:`build` makes: a model, its data module, a trainer, and the parsed config."""

    model: L.LightningModule
    datamodule: FERDataModule
    trainer: L.Trainer
    config: Any


def build(configs: str | os.PathLike | Sequence[str | os.PathLike], *overrides: Override) -> Built:
    """Build the model, data module and trainer that ``python -m lightning_fer fit`` would.

    Args:
        configs: YAML config files, applied in order (as repeated ``--config``).
        overrides: applied in order after the files: nested dicts (``{"data": {"init_args":
            {"folds": {"fold": 2}}}}``; ``{"model": {"lr": 0.01}}`` works too) or sequences of
            command-line strings (``["--trainer.max_epochs=3"]``). The parser checks both: an
            unknown option or a bad value raises an error that names it.

    Example:
        >>> built = build("configs/demo/resnet50.yaml", {"model": {"backbone": "resnet18"}, "trainer": {"logger": False}})
        >>> type(built.model).__name__, built.model.hparams.backbone, built.model.hparams.image_size
        ('FERClassifier', 'resnet18', 48)
    """
    files = [configs] if isinstance(configs, (str, os.PathLike)) else list(configs)
    cli = make_cli(_Request(tuple(os.fspath(f) for f in files), overrides), run=False, exit_on_error=False)
    return Built(cli.model, cli.datamodule, cli.trainer, cli.config)
