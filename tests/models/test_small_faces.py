"""The backbone registry and the small-face networks: by name, through the real CLI, at 48 and
64 px, grey and colour; EMA weights in checkpoints and in ``test``; flip TTA; mixup."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import REPO
from torch import nn

from lightning_fer.build import build
from lightning_fer.models.backbones import available_backbones, create_backbone
from lightning_fer.models.registry import backbone_names, get_builder, register_backbone, unregister_backbone

REPO_CONFIG = REPO / "configs" / "demo" / "resnet50.yaml"

#: (name, backbone_args): every small-face backbone and the paper's three at small-face settings.
SMALL = [
    ("fer_vgg", {"widths": [8, 16, 32], "convs_per_stage": 1}),
    ("fer_xception", {"stem_width": 8, "widths": [16, 32]}),
    ("sppnet", {"spp_trunk": "fer_vgg", "spp_hidden": 64}),
    ("resnet50", {"stem": "small"}),
    ("inception_v3", {}),
]


def test_unknown_backbone_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg_fer'.*'fer_vgg'.*'fer_xception'.*'sppnet'"):
        create_backbone("vgg_fer", 7)
    with pytest.raises(ValueError, match=r"takes no option \['width'\]; its options: \['widths'"):
        create_backbone("fer_vgg", 7, width=3)


def test_register_a_backbone_and_refuse_a_second_with_the_same_name():
    @register_backbone("test_linear")
    def build_linear(num_classes, in_channels=3, image_size=48, pretrained=None, hidden: int = 4):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden), nn.Linear(hidden, num_classes))

    try:
        assert "test_linear" in backbone_names() and "test_linear" in available_backbones()
        net = create_backbone("test_linear", 5, in_channels=1, image_size=8, hidden=3)
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, 5) and net[1].out_features == 3
        with pytest.raises(ValueError, match="already registered"):
            register_backbone("test_linear")(lambda **kw: None)
    finally:
        unregister_backbone("test_linear")
    # torchvision names come through the same registry
    assert get_builder("resnet18") is get_builder("mobilenet_v3_small")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [48, 64])
@pytest.mark.parametrize(("name", "options"), SMALL, ids=[n for n, _ in SMALL])
def test_small_face_backbones_forward_and_backward(name, options, size, channels):
    torch.manual_seed(0)
    size = max(size, 75) if name == "inception_v3" else size
    net = create_backbone(name, 7, in_channels=channels, image_size=size, **options)
    x = torch.randn(2, channels, size, size, requires_grad=True)
    out = net.train()(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_fer_vgg_width_and_depth_options():
    small = create_backbone("fer_vgg", 7, widths=[8, 16], convs_per_stage=1)
    deep = create_backbone("fer_vgg", 7, widths=[8, 16], convs_per_stage=3)
    convs = lambda m: sum(isinstance(x, nn.Conv2d) for x in m.modules())
    assert (convs(small), convs(deep)) == (2, 6)
    assert small.head[-1].in_features == 16


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed (pip install timm)")
def test_timm_backbone_by_name():
    net = create_backbone("timm/resnet18", 7, in_channels=1, image_size=48)
    assert net(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
        create_backbone("timm/no_such_net", 7)


def test_timm_backbone_without_timm_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr("lightning_fer.models.registry.timm_available", lambda: False)
    with pytest.raises(ValueError, match="needs timm: pip install"):
        create_backbone("timm/resnet18", 7)


def _tiny(root, size: int, channels: int) -> list[str]:
    return [
        "--data.init_args.source=lightning_fer.data.SyntheticSource",
        f"--data.init_args.source.init_args.root={root}",
        "--data.init_args.source.init_args.num_subjects=6",
        "--data.init_args.source.init_args.images_per_class=1",
        "--data.init_args.source.init_args.test_subjects=1",
        "--data.init_args.source.init_args.image_size=64",
        f"--data.init_args.image_size={size}",
        f"--data.init_args.channels={channels}",
        "--data.init_args.loader.num_workers=0",
        "--data.init_args.loader.batch_size=8",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.logger=false",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
    ]


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [48, 64])
@pytest.mark.parametrize(("name", "options"), SMALL[:4], ids=[n for n, _ in SMALL[:4]])
def test_small_face_backbone_by_name_through_the_cli_fits_a_batch(name, options, size, channels, tmp_path):
    import json

    built = build(REPO_CONFIG, _tiny(tmp_path / "synthetic", size, channels),
                  [f"--model.init_args.backbone={name}", f"--model.init_args.backbone_args={json.dumps(options)}",
                   "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
    model = built.model
    assert model.hparams.in_channels == channels  # said once, in the data
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    built.trainer.fit(model, datamodule=built.datamodule)
    batch = next(iter(built.datamodule.train_dataloader()))
    assert batch["views"].shape[2:] == (channels, size, size)
    assert built.trainer.global_step == 1
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2, "one optimiser step changed too few weights"


def test_flip_tta_averages_the_logits_of_the_mirror():
    from lightning_fer import FERClassifier

    model = FERClassifier("fer_vgg", backbone_args={"widths": [8, 16]}, image_size=48, in_channels=1, tta="flip").eval()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        want = (model(x) + model(x.flip(-1))) / 2  # the library's one flip rule
        assert torch.allclose(model.evaluate(x), want, atol=1e-6)
        model.hparams.tta = "none"
        assert torch.equal(model.evaluate(x), model(x))


def test_mixup_and_cutmix_train_on_soft_targets():
    from lightning_fer import FERClassifier
    from lightning_fer.models.mixing import BatchMix

    model = FERClassifier("fer_vgg", backbone_args={"widths": [8]}, image_size=32, in_channels=1,
                          mix=BatchMix(mixup_alpha=0.4, cutmix_alpha=1.0), loss={"label_smoothing": 0.1})
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 32, 32), torch.arange(8) % 7
    mixed, target = model._mixer(x, y)
    assert target.shape == (8, 7) and torch.allclose(target.sum(1), torch.ones(8))
    assert not torch.equal(mixed, x)
    loss = model._loss(model(mixed), target)
    assert torch.isfinite(loss) and loss > 0


def test_onecycle_warms_up_to_the_peak_then_anneals(tmp_path):
    import lightning as L

    from lightning_fer import FERClassifier

    model = FERClassifier("fer_vgg", backbone_args={"widths": [8]}, image_size=32,
                          optim={"optimizer": "sgd", "lr": 0.1, "scheduler": "onecycle", "warmup": 0.25})
    trainer = L.Trainer(max_steps=100, logger=False, enable_checkpointing=False, accelerator="cpu")
    model.trainer = trainer
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(100), key=lrs.__getitem__)
    assert peak == 24  # OneCycleLR peaks at step warmup * total - 1
    assert lrs[peak] == pytest.approx(0.1) and lrs[0] == pytest.approx(0.1 / 25)
    assert lrs[-1] < 1e-4


@pytest.mark.usefixtures("isolated")
def test_ema_weights_are_what_the_checkpoint_holds_and_what_test_uses(tmp_path):
    """A recipe with EMAWeightAveraging: the checkpoint's state_dict is the average (the raw
    weights beside it), and ``test``/``predict`` from it see the average, also in the trainer
    that fitted (where Lightning's own callback loads the raw weights back)."""
    config = REPO / "configs" / "fer2013" / "quick_member.yaml"
    tiny = _tiny(tmp_path / "synthetic", 48, 1)
    tiny = [a for a in tiny if not a.startswith(("--trainer.callbacks", "--trainer.enable_checkpointing",
                                                 "--trainer.logger"))]
    # a constant, large lr so that the raw weights move well away from their average in 4 steps
    built = build(config, tiny, ["--model.init_args.backbone_args={widths: [8, 16]}", "--trainer.max_steps=4",
                                 "--model.init_args.optim.scheduler=none", "--model.init_args.optim.lr=0.5",
                                 "--trainer.precision=32-true",
                                 "--trainer.callbacks+=lightning_fer.callbacks.EMAWeightAveraging"])
    ema = next(c for c in built.trainer.callbacks if type(c).__name__ == "EMAWeightAveraging")
    assert ema._kwargs["avg_fn"] is not None
    built.trainer.fit(built.model, datamodule=built.datamodule)
    ckpt_path = built.trainer.checkpoint_callback.best_model_path
    assert ckpt_path.endswith("final.ckpt")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    key = "backbone.head.2.weight"
    assert not torch.equal(averaged[key], raw[key])
    # the average, as the callback holds it, and as the model holds it after fit
    want = {k[len("module."):]: v for k, v in ema._average_model.state_dict().items() if k.startswith("module.")}
    assert torch.equal(averaged[key], want[key])
    assert torch.equal(built.model.state_dict()[key], averaged[key])

    from lightning_fer import FERClassifier

    fresh = FERClassifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    assert torch.equal(fresh.state_dict()[key], averaged[key])
    preds = built.trainer.predict(built.model, datamodule=built.datamodule, ckpt_path=ckpt_path)
    batch = next(iter(built.datamodule.predict_dataloader()))
    fresh.eval()
    with torch.no_grad():
        want_probs = fresh.evaluate(fresh._input(batch)).softmax(1)
        fresh.load_state_dict(raw)
        raw_probs = fresh.evaluate(fresh._input(batch)).softmax(1)
    assert torch.allclose(preds[0]["probs"], want_probs, atol=1e-5)
    assert not torch.allclose(preds[0]["probs"], raw_probs, atol=1e-5)
    tested = built.trainer.test(built.model, datamodule=built.datamodule, ckpt_path=ckpt_path)[0]
    assert torch.equal(built.model.state_dict()[key], averaged[key])
    assert tested["test/acc"] >= 0


@pytest.mark.usefixtures("isolated")
def test_best_member_recipe_on_data_with_official_train_val_and_test_folders(synthetic_source, tmp_path):
    """best_member.yaml (fold: null) on a folder data set that has train/, val/ and test/: it
    trains on train, validates on val and tests on test."""
    import csv
    import shutil

    synthetic_source.load()
    src = next(synthetic_source.root.rglob("manifest.csv"))
    rows = list(csv.DictReader(open(src)))
    root = tmp_path / "faces"
    for i, r in enumerate(rows):
        split = "test" if r["split"] == "test" else ("val" if i % 4 == 0 else "train")
        dest = root / split / r["label"] / f"{i}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src.parent / r["path"], dest)
    counts = {s: sum(1 for _ in (root / s).rglob("*.png")) for s in ("train", "val", "test")}
    built = build(REPO / "configs" / "fer2013" / "best_member.yaml",
                  [f"--data.init_args.root={root}", "--data.init_args.records.split_map=null", "--data.init_args.loader.num_workers=0",
                   "--data.init_args.loader.batch_size=8", "--data.init_args.records.duplicates=keep",
                   "--model.init_args.backbone_args={widths: [8, 16]}", "--trainer.max_epochs=1",
                   "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false"])
    built.trainer.fit(built.model, datamodule=built.datamodule)
    sizes = {k: len(v) for k, v in built.datamodule.splits.items()}
    assert sizes == counts and all(sizes.values())
    assert "val/acc" in built.trainer.callback_metrics
    tested = built.trainer.test(built.model, datamodule=built.datamodule, ckpt_path="best")[0]
    assert 0 <= tested["test/acc"] <= 1


def test_bad_channel_and_recipe_options_are_named():
    from lightning_fer import FERClassifier, FERDataModule

    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        FERDataModule("synthetic", channels=2)
    with pytest.raises(ValueError, match="tta must be 'none' or 'flip'"):
        FERClassifier("fer_vgg", tta="tencrop")
    with pytest.raises(ValueError, match=r"warmup must be in \(0, 1\), got 1.5"):
        FERClassifier("fer_vgg", optim={"scheduler": "onecycle", "warmup": 1.5})
