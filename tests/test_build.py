"""``build()``: the one programmatic path from configs and overrides to model, data and trainer."""

from __future__ import annotations

import pytest
from helpers import REPO

from lightning_fer import EnsembleModule, FERClassifier
from lightning_fer.build import build

DEMO = REPO / "configs" / "demo"


pytestmark = pytest.mark.usefixtures("isolated")


def test_overrides_as_dicts_and_strings_apply_in_order():
    built = build(DEMO / "sppnet.yaml",
                  {"model": {"optim": {"lr": 0.01}}, "data": {"init_args": {"folds": {"fold": 2}, "image_size": 40}}},
                  ["--model.init_args.optim.lr=0.02", "--trainer.max_epochs=3"],
                  {"trainer": {"max_epochs": 4, "logger": False}})
    assert isinstance(built.model, FERClassifier)
    assert built.model.optim.lr == 0.02  # the strings came after the dict
    assert built.trainer.max_epochs == 4  # the last dict came after the strings
    assert built.datamodule.fold == 2 and built.datamodule.image_size == 40
    assert built.model.hparams.image_size == 40  # linked from the data, as on the command line
    assert built.model.hparams.backbone == "sppnet" and list(built.model.backbone.spp.levels) == [1, 2, 4]
    assert built.config.data.init_args.folds.fold == 2


def test_several_config_files_apply_in_order():
    built = build([DEMO / "sppnet.yaml", REPO / "configs" / "loggers" / "wandb.yaml"], {"trainer": {"max_epochs": 1}})
    assert type(built.trainer.logger).__name__ == "FERWandbLogger"
    assert built.model.hparams.backbone == "sppnet"


def test_ensemble_views_are_said_once_and_follow_the_data(tmp_path):
    old = str(REPO / "tests" / "assets" / "checkpoints_v0" / "member.ckpt")
    built = build(DEMO / "ensemble_soft.yaml", {"model": {"init_args": {"members": [old]}},
                                                "data": {"init_args": {"views": ["face", "mouth"]}}})
    assert isinstance(built.model, EnsembleModule)
    assert built.model.views == built.datamodule.views == ["face", "mouth"]
    assert built.model.ensemble.image_size == built.datamodule.image_size == 80  # linked, and used


def test_a_bad_override_names_the_option():
    with pytest.raises(Exception, match="no_such_option"):
        build(DEMO / "sppnet.yaml", {"model": {"init_args": {"no_such_option": 1}}})
    with pytest.raises(Exception, match="max_epochs"):
        build(DEMO / "sppnet.yaml", ["--trainer.max_epochs=many"])
