"""Constructors a person can hold in their head: option groups (dataclasses that jsonargparse
types and checks), the argument counts, 0.1/0.2 flat options migrated, groups saved as plain
values (checkpoints load with ``weights_only=True``), and layered configs."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import lightning as L
import pytest
import torch
import yaml
from helpers import REPO, parse_only, tiny_args

from lightning_fer import EnsembleModule, FERClassifier, FERDataModule
from lightning_fer.build import config_layers, expand_bases
from lightning_fer.cv.train import checkpoint_monitor

pytestmark = pytest.mark.usefixtures("isolated")


def _arguments(cls) -> list[str]:
    return [p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD]


@pytest.mark.parametrize(("cls", "most"), [(FERDataModule, 12), (FERClassifier, 12), (EnsembleModule, 8)])
def test_constructor_argument_counts(cls, most):
    names = _arguments(cls)
    assert len(names) <= most, names
    # None that nothing reads: every argument is used in the class's code below its signature.
    source = inspect.getsource(cls)
    body = source[source.index(") -> None:"):]
    body = re.sub(r'"""[\s\S]*?"""', "", body)  # docstrings do not count
    unread = [n for n in names if not re.search(rf"\b{n}\b", body)]
    assert not unread, f"{cls.__name__} arguments nothing reads: {unread}"


def test_data_options_of_earlier_versions_move_into_their_groups(tmp_path):
    """0.1's flat data options (the checkpoints in tests/assets/checkpoints_v0), 0.3's (fold,
    split_map, batch_size, wire ...) and the shipped bundles' load into folds, records, loader,
    landmarks, training and predict; a name no version took is named."""
    from lightning_fer.data.legacy import current_data_options
    from lightning_fer.shipped import load_bundle, names

    saved = torch.load(REPO / "tests/assets/checkpoints_v0/member.ckpt", weights_only=True)["datamodule_hyper_parameters"]
    opts, moved = current_data_options(saved)
    assert {"fold", "batch_size", "no_face", "train_fraction", "predict_path", "folds_file"} <= set(moved)
    assert opts["folds"] == {"fold": 0, "num_folds": 5, "seed": 0, "eval_split": "official"}
    assert opts["loader"] == {"batch_size": 4, "num_workers": 0} and opts["predict"] is None
    assert opts["landmarks"] == {"mode": "auto", "no_face": "template", "min_inside": 0.5, "batch_size": 32,
                                 "device": None}
    dm = FERDataModule.load_from_checkpoint(REPO / "tests/assets/checkpoints_v0/member.ckpt", root=str(tmp_path))
    assert (dm.fold, dm.num_folds, dm.batch_size, dm.image_size, dm.training.fraction) == (0, 5, 4, 64, 1.0)
    assert dm.landmark_settings.mode == "auto" and dm.predict_options is None
    flat = {"root": "x", "split_map": {"val": "test"}, "duplicates": "drop", "wire": "uint8", "eval_split": "all"}
    assert current_data_options(flat)[0] == {"root": "x", "folds": {"eval_split": "all"}, "loader": {"wire": "uint8"},
                                             "records": {"split_map": {"val": "test"}, "duplicates": "drop"}}
    assert current_data_options(opts) == (opts, [])  # current options pass through
    with pytest.raises(TypeError, match=r"FERDataModule options \['folds_path'\] are unknown"):
        current_data_options({"folds_path": "x"})
    for name in names():  # the bundles on disk hold 0.3's flat layout; they are read in the current one
        data = load_bundle(name)["data"]
        assert data["records"] == {"split_map": {"val": "test"}, "duplicates": "drop"}, name
        assert "fold" not in data and data["folds"] == {"fold": None}


def test_the_ensemble_has_no_num_classes_argument():
    # It was "checked against the members" by its docstring only; the classes come from the members.
    assert "num_classes" not in _arguments(EnsembleModule)


def _old_checkpoint(path, model, **saved):
    """``model``'s weights under the options an earlier version saved (``saved``)."""
    torch.save({"state_dict": model.state_dict(), "pytorch-lightning_version": L.__version__,
                "hyper_parameters": {"_class_path": "lightning_fer.FERClassifier", **saved}}, path)
    return path


def test_options_of_earlier_checkpoints_move_into_their_groups(tmp_path, caplog):
    """0.2's flat options (lr, spp_levels, teacher ...) and 0.3's (label_smoothing, class_weights,
    aux_weight, pretrained) load into optim, backbone_args, distill and loss, and the backbone
    they name is built before the weights load."""
    import logging

    now = FERClassifier("sppnet", image_size=64, backbone_args={"spp_levels": [1, 2], "spp_trunk": "zf5"})
    old = _old_checkpoint(tmp_path / "old.ckpt", now, backbone="sppnet", image_size=64, num_classes=7, lr=0.05,
                          optimizer="sgd", scheduler="onecycle", spp_levels=[1, 2], spp_trunk="zf5", stem="imagenet",
                          teacher="t.pt", distill_weight=0.3, channels_last=True, label_smoothing=0.1,
                          class_weights="balanced", aux_weight=0.3, pretrained=None)
    with caplog.at_level(logging.INFO, logger="lightning_fer.models.classifier"):
        m = FERClassifier.load_from_checkpoint(old, map_location="cpu", weights_only=True)
    assert (m.optim.lr, m.optim.optimizer, m.optim.scheduler) == (0.05, "sgd", "onecycle")
    assert m.hparams.backbone_args == {"spp_levels": [1, 2], "spp_trunk": "zf5", "stem": "imagenet"}
    assert list(m.backbone.spp.levels) == [1, 2]  # built as the checkpoint says (the default is 1, 2, 4)
    assert (m.distill.teacher, m.distill.weight) == ("t.pt", 0.3)
    assert (m.loss.label_smoothing, m.loss.class_weights, m.loss.aux_weight) == (0.1, "balanced", 0.3)
    assert "moved into their groups" in caplog.text
    assert not {"lr", "spp_levels", "label_smoothing", "pretrained"} & set(m.hparams)  # saved in their groups only
    for k, v in now.state_dict().items():
        torch.testing.assert_close(m.state_dict()[k], v)
    # 0.1 saved every flat option; only those the builder takes are kept.
    r = FERClassifier.load_from_checkpoint(
        _old_checkpoint(tmp_path / "r.ckpt", FERClassifier("resnet18", image_size=48, backbone_args={"stem": "small_pool"}),
                        backbone="resnet18", image_size=48, spp_levels=[1, 2, 4], spp_hidden=1024, stem="small_pool"),
        map_location="cpu", weights_only=True)
    assert r.hparams.backbone_args == {"stem": "small_pool"}
    with pytest.raises(TypeError, match=r"options \['learning_rate'\] are unknown"):
        FERClassifier.load_from_checkpoint(_old_checkpoint(tmp_path / "u.ckpt", now, backbone="sppnet", learning_rate=0.1),
                                           weights_only=True)
    with pytest.raises(TypeError, match="learning_rate"):
        FERClassifier("resnet18", learning_rate=0.1)  # the constructor takes its options only


def test_an_earlier_checkpoint_tests_on_the_command_line(tmp_path):
    """``--ckpt_path`` hands its saved options to the parser: an earlier version's move into their
    groups first, so that ``test`` runs on it."""
    from lightning_fer.cli import main

    model = FERClassifier("fer_vgg", image_size=48, backbone_args={"widths": [8, 16]})
    ckpt = _old_checkpoint(tmp_path / "old.ckpt", model, backbone="fer_vgg", backbone_args={"widths": [8, 16]},
                           image_size=48, num_classes=7, label_smoothing=0.2, lr=0.01)
    cli = main(["test", "--config", str(REPO / "configs/demo/resnet50.yaml"), *tiny_args(tmp_path / "synthetic"),
                f"--ckpt_path={ckpt}"])
    assert cli.model.hparams.backbone == "fer_vgg" and cli.model.loss.label_smoothing == 0.2
    assert cli.model.optim.lr == 0.01 and "test/acc" in cli.trainer.callback_metrics


def test_group_values_are_checked_and_named(tmp_path):
    with pytest.raises(ValueError, match=r"optim.warmup must be in \(0, 1\), got 1.5"):
        FERClassifier("fer_vgg", optim={"warmup": 1.5})
    with pytest.raises(ValueError, match=r"loss.label_smoothing must be in \[0, 1\) and loss.aux_weight >= 0, got 1.5"):
        FERClassifier("fer_vgg", loss={"label_smoothing": 1.5})
    with pytest.raises(ValueError, match=r"loss.class_weights 'inverse': 'balanced', one weight per class, or null"):
        FERClassifier("fer_vgg", loss={"class_weights": "inverse"})
    with pytest.raises(ValueError, match=r"landmarks.no_face must be one of"):
        FERDataModule("synthetic", root=str(tmp_path), landmarks={"no_face": "guess"})
    with pytest.raises(ValueError, match=r"training.fraction must be in \(0, 1\]"):
        FERDataModule("synthetic", root=str(tmp_path), training={"fraction": 2.0})
    with pytest.raises(ValueError, match=r"--data.predict.output 'x.txt': must end in .csv or .json"):
        FERDataModule("synthetic", root=str(tmp_path), predict={"path": "a.jpg", "output": "x.txt"})


def test_groups_on_the_command_line():
    cfg = REPO / "configs" / "demo" / "sppnet.yaml"
    cli = parse_only(["--config", str(cfg), "--data.landmarks=template", "--model.optim.lr=0.05",
                      "--data.training.fraction=0.5", "--data.predict.path=photos/", "--data.predict.video.fps=5"])
    data, model = cli.config.data.init_args, cli.config.model.init_args
    assert data.landmarks == "template" and data.training.fraction == 0.5 and model.optim.lr == 0.05
    assert data.predict.path == "photos/" and data.predict.video.fps == 5
    cli = parse_only(["--config", str(cfg), "--data.landmarks.mode=mtcnn", "--data.landmarks.no_face=skip"])
    assert (cli.config.data.init_args.landmarks.mode, cli.config.data.init_args.landmarks.no_face) == ("mtcnn", "skip")


def test_checkpoints_with_every_group_set_load_with_weights_only(tmp_path):
    """A classifier trained with mixup, a one-cycle schedule and grouped data options writes a
    checkpoint that ``torch.load(weights_only=True)`` reads (mixup's dataclass was pickled in 0.2),
    and that loads back into the same options."""
    from lightning_fer.data.sources import SyntheticSource

    src = SyntheticSource(str(tmp_path / "s"), num_subjects=6, images_per_class=1, test_subjects=1, image_size=48)
    dm = FERDataModule(src, image_size=32, landmarks="template", training={"augment": True, "balanced_sampler": True},
                       folds={"num_folds": 3}, records={"cache_dir": str(tmp_path / "c")},
                       loader={"batch_size": 8, "num_workers": 0})
    model = FERClassifier("fer_vgg", backbone_args={"widths": [8, 16]}, class_names=dm.class_names, image_size=32,
                          optim={"optimizer": "sgd", "lr": 0.05, "scheduler": "onecycle"}, mix={"mixup_alpha": 0.2})
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    data = torch.load(tmp_path / "m.ckpt", map_location="cpu", weights_only=True)
    assert data["hyper_parameters"]["mix"] == {"mixup_alpha": 0.2, "cutmix_alpha": 0.0, "p": 1.0}
    assert data["datamodule_hyper_parameters"]["landmarks"]["mode"] == "template"
    back = FERClassifier.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert back.optim == model.optim and back.mix == model.mix


MEMBERS = sorted(p for d in ("demo", "fer2013", "affectnet") for p in (REPO / "configs" / d).glob("*.yaml")
                 if "FERClassifier" in p.read_text())


@pytest.mark.parametrize("config", MEMBERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_member_configs_extend_a_base_and_restate_no_defaults(config):
    layers = config_layers(config)
    # bases: configs/base/*.yaml, and a data set's own data block (configs/<dataset>/data.yaml)
    assert len(layers) >= 2 and all(p.parent.name == "base" or p.name == "data.yaml" for p, _ in layers[:-1])
    own = layers[-1][1]
    assert set(own) <= {"trainer", "model", "data"}, set(own)
    assert set(own["trainer"]) <= {"max_epochs", "default_root_dir", "log_every_n_steps"}, own["trainer"]
    for key, cls, keep in (("model", FERClassifier, {"backbone"}), ("data", FERDataModule, {"source", "root"})):
        defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()}
        given = own.get(key, {}).get("init_args", {})
        restated = {k: v for k, v in given.items() if k not in keep and k in defaults and defaults[k] == v}
        # inside an option group (data.folds, data.loader ...): the fields that say what the group's default says
        restated |= {f"{k}.{f}": v[f] for k, v in given.items() if isinstance(v, dict)
                     and dataclasses.is_dataclass(defaults.get(k)) for f in v if getattr(defaults[k], f, object()) == v[f]}
        assert not restated, f"{config.name} restates {key} defaults {restated}"


def test_base_configs_expand_in_order_and_a_later_value_wins(tmp_path):
    (tmp_path / "base.yaml").write_text("trainer:\n  max_epochs: 3\n  log_every_n_steps: 7\n")
    (tmp_path / "mid.yaml").write_text("base: base.yaml\ntrainer:\n  max_epochs: 5\n")
    (tmp_path / "top.yaml").write_text("base: mid.yaml\ntrainer:\n  default_root_dir: runs/x\n")
    argv = expand_bases(["fit", "--config", str(tmp_path / "top.yaml"), "--trainer.max_epochs=9"])
    assert argv[:3] == ["fit", "--config", str((tmp_path / "base.yaml").resolve())]
    assert [json.loads(a) for a in argv[4:7:2]] == [{"trainer": {"max_epochs": 5}}, {"trainer": {"default_root_dir": "runs/x"}}]
    assert argv[-1] == "--trainer.max_epochs=9"
    (tmp_path / "loop.yaml").write_text("base: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="base configs form a loop"):
        config_layers(tmp_path / "loop.yaml")
    (tmp_path / "lost.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"lost.yaml: base config 'nowhere.yaml' not found"):
        config_layers(tmp_path / "lost.yaml")


def test_a_layered_config_trains_into_its_own_run_folder(tmp_path, monkeypatch):
    from lightning_fer.cli import main

    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs/demo/sppnet.yaml"), *tiny_args(tmp_path / "synthetic"),
          "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--test_after_fit=false",
          "--trainer.default_root_dir=runs/mine"])
    assert (tmp_path / "runs/mine/checkpoints/best.ckpt").is_file()  # the base's dirpath follows default_root_dir
    assert list((tmp_path / "runs/mine/logs").rglob("metrics.csv"))


def test_checkpoint_monitor_of_the_shipped_configs():
    assert checkpoint_monitor(REPO / "configs/affectnet/resnet50.yaml") == ("val/balanced_acc", "max")
    assert checkpoint_monitor(REPO / "configs/demo/resnet50.yaml") == ("val/acc", "max")
    assert checkpoint_monitor(REPO / "configs/fer2013/quick_member.yaml")[0] is None  # final weights


def test_an_affectnet_member_trained_through_cv_keeps_its_monitor(tmp_path, monkeypatch, caplog):
    import logging

    from lightning_fer.cli import main

    monkeypatch.chdir(tmp_path)
    member = str(REPO / "configs/affectnet/sppnet.yaml")
    overrides = [*tiny_args(tmp_path / "synthetic", subjects=8), "--data.init_args.root=null",
                 "--data.init_args.image_size=48", "--data.init_args.loader.num_workers=0", "--trainer.max_epochs=1",
                 "--trainer.limit_train_batches=2"]
    with caplog.at_level(logging.INFO, logger="lightning_fer.cv.train"):
        main(["cv", "--lineup.members", json.dumps([member]), "--output_dir", "cv", "--folds.folds", "[0]", "--folds.num_folds", "3",
              "--lineup.overrides", json.dumps(overrides), "--strategies", '[{"class_path": "lightning_fer.ensemble.HardVote"}]'])
    done = json.loads((tmp_path / "cv/fold0/sppnet/done.json").read_text())
    assert done["monitor"] == "val/balanced_acc" and done["monitor_from"] == f"its config {member}"
    ckpt = torch.load(done["checkpoint"], map_location="cpu", weights_only=True)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert state["monitor"] == "val/balanced_acc"
    assert "the checkpoint is chosen by the best val/balanced_acc (max) (its config" in caplog.text


def test_shipped_member_configs_parse_to_the_same_options_as_before():
    """The layered demo config gives the trainer the flat 0.2 one gave: run folder, logger folder,
    checkpoint folder and monitor."""
    cli = parse_only(["--config", str(REPO / "configs/demo/resnet50.yaml")])
    t = cli.config.trainer
    assert t.default_root_dir == "runs/demo/resnet50" and t.max_epochs == 12 and t.devices == 1
    assert t.logger.init_args.save_dir == "runs/demo/resnet50"
    (ckpt,) = [c for c in t.callbacks if c.class_path.endswith("ModelCheckpoint")]
    assert ckpt.init_args.dirpath == "runs/demo/resnet50/checkpoints" and ckpt.init_args.monitor == "val/acc"
    assert yaml.safe_load((REPO / "configs/demo/resnet50.yaml").read_text())["base"] == "../base/trainer.yaml"


@pytest.mark.parametrize("dataset", ["demo", "affectnet"])
def test_ensemble_configs_share_a_base_and_add_only_their_strategy(dataset):
    """Issue 35: the ensemble configs of a data set are deltas on its ensemble.yaml (members, data,
    trainer said once): each adds its strategy, where it logs, and (regions) its views."""
    configs = sorted((REPO / "configs" / dataset).glob("ensemble_*.yaml"))
    assert len(configs) == 4
    for config in configs:
        layers = config_layers(config)
        assert [p.name for p, _ in layers[:-1]] == ["ensemble.yaml"], config.name
        own = layers[-1][1]
        assert set(own["model"]["init_args"]) <= {"strategy", "views"}, config.name
        assert len(config.read_text().splitlines()) <= 16, config.name


def test_the_ensemble_takes_at_most_eight_options_and_old_checkpoints_drop_the_deleted_ones():
    """Issue 35: ``bind_experts`` and ``strategy_fit_split`` were set by nothing and are gone; an
    ensemble checkpoint that still names them (0.1's) loads, its experts bound as before."""
    from lightning_fer import EnsembleModule

    assert len(inspect.signature(EnsembleModule.__init__).parameters) - 1 <= 8
    old = REPO / "tests" / "assets" / "checkpoints_v0" / "ensemble.ckpt"
    saved = torch.load(old, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert {"bind_experts", "strategy_fit_split"} <= set(saved)
    ens = EnsembleModule.load_from_checkpoint(old, map_location="cpu", weights_only=True)
    assert ens.views == ["face", "mouth"] and "bind_experts" not in ens.hparams


@pytest.mark.parametrize("args", [["--data.records.split_map=null", "--data.init_args.records.cache_dir=null",
                                   "--data.folds.fold", "null"],
                                  ["--data.init_args.records.split_map", "null", "--data.records.cache_dir", "null",
                                   "--data.init_args.folds.fold=null"]])
def test_null_for_a_field_of_a_data_group_is_none_and_keeps_the_other_fields(args):
    """jsonargparse 4.53 reads ``--data.records.cache_dir=null`` as the string 'None' (a folder of that
    name) and refuses it for split_map's mapping; the CLI passes it as a mapping that merges."""
    cli = parse_only(["--config", str(REPO / "configs/fer2013/best_member.yaml"), "--data.records.cache_dir=x", *args])
    records, folds = cli.config.data.init_args.records, cli.config.data.init_args.folds
    assert records.split_map is None and records.cache_dir is None and folds.fold is None
    assert records.duplicates == "drop"  # the config's, kept
