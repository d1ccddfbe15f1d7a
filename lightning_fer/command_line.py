"""One parser for every subcommand: Trainer's four (``fit``, ``validate``, ``test``, ``predict``)
and the library's tools (``cv``, ``export``, ``pretrained``, ``serve``), each tool a method of
:class:`CommandLine` named for it. :mod:`lightning_fer.cli` runs it; nothing imports this module
back.
"""

from __future__ import annotations

import inspect
import logging
from argparse import Action
from typing import Literal

import lightning
import torch
import yaml
from jsonargparse import ActionConfigFile
from lightning.pytorch.cli import LightningCLI

from lightning_fer import cv, serve
from lightning_fer.build import FERCLI, make_cli
from lightning_fer.zoo import PretrainedError, bf16_checked, describe, materialize

log = logging.getLogger("lightning_fer.cli")

#: Trainer's subcommands
TRAINER = tuple(LightningCLI.subcommands())
#: the library's own subcommands, each a :class:`CommandLine` method of its name
TOOLS = {"cv": "cross-validated training of several members, out-of-fold stacking, Table II",
         "export": "a member or an ensemble to TorchScript or ONNX, checked against eager outputs",
         "pretrained": "list the shipped models (use one with --pretrained NAME)",
         "serve": 'a web page and a JSON API on a shipped model (pip install "lightning-fer[serve]")'}
#: the subcommands that take ``--pretrained NAME``
PRETRAINED = ("predict", "test", "validate", "export")


class ActionPretrained(Action):
    """``--pretrained NAME``: the shipped model's config (model and data) merged where the option
    stands, as a ``--config`` there would be (later options win), and its checkpoint as
    ``ckpt_path``; float32 (``fast_path: off``) for a model whose bf16 check failed, unless
    ``--fast_path`` says otherwise. With ``--config`` before or after it, refused."""

    def __call__(self, parser, cfg, name, option_string=None):
        for option in ("config", "ckpt_path"):
            if cfg.get(option):
                raise PretrainedError(_both(name, f"--{option}"))
        config, ckpt = materialize(name)
        ActionConfigFile.apply_config(parser, cfg, "config", str(config))
        cfg["ckpt_path"], cfg["pretrained"] = str(ckpt), name
        ok, why = bf16_checked(name)
        if not ok and cfg.get("fast_path") == "auto":
            log.info("--pretrained %s: bf16 not considered (%s): float32", name, why)
            cfg["fast_path"] = "off"


class ActionConfig(ActionConfigFile):
    """``--config``, refused after ``--pretrained``."""

    def __call__(self, parser, cfg, values, option_string=None):
        if cfg.get("pretrained"):
            raise PretrainedError(_both(cfg.pretrained, "--config"))
        super().__call__(parser, cfg, values, option_string)


def _both(name: str, option: str) -> str:
    return (f"--pretrained {name} brings its own config and checkpoint: drop {option} "
            "(or drop --pretrained and pass --config and --ckpt_path yourself)")


def check_pretrained(subcommand: str, cfg) -> None:
    """Refuse what ``--pretrained`` cannot go with, in one line: ``--config`` or ``--ckpt_path``
    beside it (which would win is not clear), ``predict`` with nothing to predict on."""
    name = cfg.get("pretrained")
    if not name:
        return
    if subcommand not in PRETRAINED:
        raise PretrainedError(f"--pretrained works with {', '.join(PRETRAINED)}, not {subcommand!r}")
    config, ckpt = materialize(name)
    if cfg.ckpt_path != str(ckpt):
        raise PretrainedError(_both(name, "--ckpt_path"))
    shipped_root = yaml.safe_load(config.read_text())["data"]["init_args"].get("root")
    data = cfg.data.init_args
    if subcommand == "predict" and (data.get("predict") or {}).get("path") is None and data.root == shipped_root:
        raise PretrainedError(f"predict --pretrained {name} needs --data.predict.path PATH: a photo, a video or a "
                              "folder of them (or --data.root to predict on the test split of the data it learnt from)")


class CommandLine(FERCLI):
    """``FERCLI`` with the tools as subcommands of its parser; a tool's return value is ``result``."""

    result = None

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), **{tool: set() for tool in TOOLS}}

    def _add_subcommands(self, parser, **kwargs) -> None:
        self._subcommand_parsers = {}
        subcommands = parser.add_subcommands()
        for name in self.subcommands():
            about = TOOLS.get(name) or inspect.getdoc(getattr(self.trainer_class, name)).splitlines()[0]
            sub = self._subcommand_parser(name, **{"description": about, **kwargs.get(name, {})})
            self._subcommand_parsers[name] = sub
            subcommands.add_subcommand(name, sub, help=about)

    def init_parser(self, **kwargs):
        parser = self.parser_class(**{"dump_header": [f"lightning.pytorch=={lightning.__version__}"], **kwargs})
        parser.add_argument("-c", "--config", action=ActionConfig, help="a config file (YAML), or YAML or JSON text")
        return parser

    def _subcommand_parser(self, name: str, **kwargs):
        if name in TRAINER:
            parser = self._prepare_subcommand_parser(self.trainer_class, name, **kwargs)
        elif name == "serve":  # its --config names a model config, not a file of serve's options
            parser = self.parser_class(**kwargs)
            serve.add_arguments(parser)
        else:
            parser = self.init_parser(**kwargs)
        if name == "cv":
            cv.add_arguments(parser)
        if name == "export":
            self._add_arguments(parser)
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="weights to export (a Lightning checkpoint)")
            parser.add_argument("--format", type=Literal["torchscript", "onnx"], default="torchscript")
            parser.add_argument("--output", type=str | None, default=None, help="default: runs/export/<backbone>.<pt|onnx>")
        if name in (*TRAINER, "export"):  # fit refuses it in a line that says where it works
            parser.add_argument("--pretrained", action=ActionPretrained, type=str,
                                help="a shipped model instead of --config and --ckpt_path (the pretrained subcommand lists them)")
        return parser

    def _builds(self) -> bool:
        return self.subcommand in (*TRAINER, "export")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        if sub in (*TRAINER, "export"):
            check_pretrained(sub, self.config[sub])

    def _parse_ckpt_path(self) -> None:
        if self.config.get("subcommand") in (*TRAINER, "export"):
            super()._parse_ckpt_path()

    def _set_seed(self) -> None:
        if self._builds():
            super()._set_seed()

    def before_instantiate_classes(self) -> None:
        if self._builds():
            super().before_instantiate_classes()

    def instantiate_classes(self) -> None:
        if self._builds():
            super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand in TOOLS:
            self.result = getattr(self, subcommand)(self.config[subcommand])
        else:
            super()._run_subcommand(subcommand)

    def cv(self, cfg):
        return cv.run_parsed(self._subcommand_parsers["cv"], cfg)

    def export(self, cfg):
        from lightning_fer.export import example_input, export

        model = self.model
        name = getattr(model.hparams, "backbone", None) or type(model).__name__.lower()
        output = cfg.output or f"runs/export/{name}.{'pt' if cfg.format == 'torchscript' else 'onnx'}"  # never beside the code
        if cfg.ckpt_path:
            model.load_state_dict(torch.load(cfg.ckpt_path, map_location="cpu", weights_only=True)["state_dict"])
        return export(model, output, cfg.format, example_input(model, image_size=self.datamodule.image_size))

    def pretrained(self, cfg) -> None:
        print(describe(), end="")

    def serve(self, cfg) -> None:
        serve.run(cfg)


def make_command_line(argv: list[str], exit_on_error: bool = True) -> CommandLine:
    """Parse ``argv`` (a subcommand first) and run it."""
    return make_cli(argv, run=True, exit_on_error=exit_on_error, cls=CommandLine)


__all__ = ["PRETRAINED", "TOOLS", "TRAINER", "ActionPretrained", "CommandLine", "make_command_line"]
