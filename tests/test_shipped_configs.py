"""Every shipped experiment config builds through :func:`lightning_fer.build.build` and runs one
batch (as TorchGeo does for its configs): the member configs ``fit`` one training and one
validation batch, the ensemble configs ``test`` one batch. The data is swapped for a tiny
synthetic set (AffectNet and FER2013 need not be here) and the size cut to 80 px; everything
else (backbone, optimiser, schedule, views, strategy, augmentation, duplicates policy) is the
config's own."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from helpers import REPO

from lightning_fer.build import build

EXPERIMENTS = [REPO / "configs" / d for d in ("demo", "fer2013", "affectnet", "fer2013/zoo")]
MEMBERS = sorted(p for d in EXPERIMENTS for p in d.glob("*.yaml") if not p.stem.startswith(("cv", "ensemble", "data")))  # data.yaml, ensemble.yaml: bases
ENSEMBLES = sorted(p for d in EXPERIMENTS for p in d.glob("ensemble_*.yaml"))
OLD_MEMBER = REPO / "tests" / "assets" / "checkpoints_v0" / "member.ckpt"


def _tiny(root: Path) -> dict:
    source = {"class_path": "lightning_fer.data.SyntheticSource",
              "init_args": {"root": str(root), "num_subjects": 12, "images_per_class": 1, "test_subjects": 2,
                            "image_size": 80}}
    return {
        "data": {"init_args": {"source": source, "root": None, "image_size": 80, "loader": {"batch_size": 4, "num_workers": 0},
                               "training": {"fraction": 1.0}}},
        "trainer": {"accelerator": "cpu", "devices": 1, "fast_dev_run": 1,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root)}},
                    "enable_progress_bar": False, "enable_model_summary": False},
    }


pytestmark = pytest.mark.usefixtures("isolated")


def _soft_targets(dm, path: Path) -> None:
    """Soft targets for every training image of ``dm`` (a teacher that says 0.4 for the label)."""
    dm.prepare_data()
    dm.setup("fit")
    probs = torch.full((len(dm.records), len(dm.class_names)), 0.6 / (len(dm.class_names) - 1))
    labels = torch.as_tensor([r.label for r in dm.records])
    probs[torch.arange(len(probs)), labels.clamp(min=0)] = 0.4
    torch.save({"probs": probs, "class_names": list(dm.class_names), "data_print": dm.fingerprint()}, path)


@pytest.mark.parametrize("config", MEMBERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_member_config_fits_one_batch(config, tmp_path):
    built = build(config, _tiny(tmp_path / "synthetic"), {"model": {"init_args": {"backbone_args": {"pretrained": None}}}})
    if built.model.distill is not None:  # a student (fer2013/fast_member.yaml): a teacher's soft targets on this data
        built = build(config, _tiny(tmp_path / "synthetic"), {"model": {"init_args": {
            "backbone_args": {"pretrained": None}, "distill": {"teacher": str(tmp_path / "soft_targets.pt")}}}})
        _soft_targets(built.datamodule, tmp_path / "soft_targets.pt")
    from lightning_fer.build import config_layers

    # the backbone the config says, in its own file or in a base it extends
    own = next(layer["model"]["init_args"]["backbone"] for _, layer in reversed(config_layers(config))
               if (layer or {}).get("model", {}).get("init_args", {}).get("backbone"))
    assert built.model.hparams.backbone == own and built.model.hparams.image_size == 80
    before = {k: v.clone() for k, v in built.model.state_dict().items() if v.is_floating_point()}
    built.trainer.fit(built.model, datamodule=built.datamodule)
    assert built.trainer.state.finished and built.trainer.global_step == 1
    loss = float(built.trainer.callback_metrics["train/loss"])
    assert loss == loss and 0 < loss < 20  # a finite cross-entropy over 7 classes
    changed = [k for k, v in built.model.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert changed, "one optimiser step changed no weight"


@pytest.mark.parametrize("config", ENSEMBLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ensemble_config_tests_one_batch(config, tmp_path):
    # Three copies of a small stored member stand in for the config's three trained members;
    # they were trained on other data, so the leak check that guards learning strategies is off.
    members = {"model": {"init_args": {"members": [str(OLD_MEMBER)] * 3, "check_leaks": False}}}
    built = build(config, _tiny(tmp_path / "synthetic"), members)
    ens = built.model
    assert ens.views == built.datamodule.views and len(ens.members) == 3
    built.trainer.test(ens, datamodule=built.datamodule)
    assert ens.strategy.is_fitted or not ens.strategy.requires_fit
    acc = float(built.trainer.callback_metrics["test/acc"])
    # The figure Lightning logged is the accuracy of the plain forward on the batch it tested
    # (fast_dev_run: the first).
    preds, labels, alone = [], [], []
    with torch.no_grad():
        for batch in itertools.islice(built.datamodule.test_dataloader(), 1):
            preds.append(ens(batch["views"], batch.get("view_mask"), batch.get("image")).argmax(1))
            labels.append(batch["label"])
            alone.append(ens.members[0](batch["views"][:, 0]).argmax(1))
    preds, labels, alone = torch.cat(preds), torch.cat(labels), torch.cat(alone)
    assert acc == pytest.approx(float((preds == labels).float().mean()), abs=1e-6)
    if ens.views == ["face"] and type(ens.strategy).__name__ in ("HardVote", "SoftVote"):
        # Three identical members vote as one: the ensemble says what the member says.
        assert torch.equal(preds, alone)
