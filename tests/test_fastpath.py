"""The fast path: one place chooses precision and memory format from the machine (the detection
can be forced), uint8 batches normalise to the tensors the float path gives, and compiled
members answer as eager ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import REPO

from lightning_fer import EnsembleModule, FERClassifier, FERDataModule
from lightning_fer.build import build
from lightning_fer.data.sources import SyntheticSource
from lightning_fer.data.transforms import _SCALE, normalize_batch
from lightning_fer.fastpath import FLAGS_ENV, choose, cpu_has_bf16_units

AMX = "fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile"


pytestmark = pytest.mark.usefixtures("isolated")


@pytest.mark.parametrize(("flags", "setting", "precision", "channels_last"), [
    (AMX, "auto", "bf16-mixed", True),
    ("fpu sse avx2", "auto", "32-true", False),
    (AMX, "off", "32-true", False),
    ("fpu sse avx2", "on", "bf16-mixed", True),
])
def test_the_choice_on_cpus_with_and_without_bf16_units(monkeypatch, flags, setting, precision, channels_last):
    monkeypatch.setenv(FLAGS_ENV, flags)
    fp = choose(setting, "cpu")
    assert (fp.precision, fp.channels_last, fp.device) == (precision, channels_last, "cpu")
    assert cpu_has_bf16_units() == ("amx_bf16" in flags)
    with pytest.raises(ValueError, match="fast_path must be"):
        choose("fast", "cpu")


@pytest.mark.parametrize(("flags", "extra", "precision", "channels_last"), [
    (AMX, [], "bf16-mixed", True),
    ("fpu avx2", [], "32-true", False),
    (AMX, ["--trainer.precision=32-true", "--channels_last=false"], "32-true", False),
    ("fpu avx2", ["--fast_path=on"], "bf16-mixed", True),
])
def test_the_cli_applies_the_choice_unless_told_otherwise(monkeypatch, caplog, flags, extra, precision, channels_last):
    monkeypatch.setenv(FLAGS_ENV, flags)
    built = build(REPO / "configs" / "demo" / "sppnet.yaml", {"trainer": {"logger": False, "accelerator": "cpu"}}, extra)
    assert built.trainer.precision == precision
    assert built.model.channels_last is channels_last
    if channels_last:
        conv = next(m for m in built.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def _datamodule(root, wire: str, augment: bool) -> FERDataModule:
    src = SyntheticSource(str(root), num_subjects=6, images_per_class=1, test_subjects=1, image_size=64)
    dm = FERDataModule(src, views=["face", "mouth", "rest"], image_size=32, training={"augment": augment},
                       loader={"batch_size": 8, "num_workers": 0, "wire": wire})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_uint8_batches_normalise_to_the_float_batches(tmp_path):
    f32, u8 = _datamodule(tmp_path / "s", "float32", True), _datamodule(tmp_path / "s", "uint8", True)
    for split in ("val", "test"):  # no augmentation: the same tensors, bit for bit
        for a, b in zip(f32.loader(split), u8.loader(split)):
            assert b["views"].dtype == torch.uint8 and b["views"].nbytes * 4 == a["views"].nbytes
            b = normalize_batch(b)
            assert torch.equal(a["views"], b["views"]) and torch.equal(a["image"], b["image"])
    # Training augmentation drawn from the same seed: equal within the half-pixel the uint8 path rounds.
    f32.datasets["train"].transform.augment.set_random_seed(3)
    u8.datasets["train"].transform.augment.set_random_seed(3)
    ds_a, ds_b = f32.datasets["train"], u8.datasets["train"]
    for i in range(len(ds_a)):
        a, b = ds_a[i]["views"], normalize_batch({"views": ds_b[i]["views"][None]})["views"][0]
        assert float((a - b).abs().max()) <= float(_SCALE.max()) * 0.5 + 1e-6


def test_a_uint8_wire_trains_and_ensembles_collect_the_same(tmp_path):
    root = str(tmp_path / "synthetic")
    src = {"class_path": "lightning_fer.data.SyntheticSource",
           "init_args": {"root": root, "num_subjects": 8, "images_per_class": 1, "test_subjects": 2, "image_size": 64}}
    common = {"data": {"init_args": {"source": src, "image_size": 32,
                                     "loader": {"batch_size": 4, "num_workers": 0, "wire": "uint8"}}},
              "trainer": {"logger": False, "accelerator": "cpu", "fast_dev_run": 2, "enable_progress_bar": False}}
    built = build(REPO / "configs" / "demo" / "resnet50.yaml", common, {"model": {"init_args": {"backbone": "resnet18"}}})
    built.trainer.fit(built.model, datamodule=built.datamodule)
    assert torch.isfinite(built.trainer.callback_metrics["train/loss"])
    ens = EnsembleModule([built.model], views=["face"]).eval()
    dm_u8 = built.datamodule
    dm_f32 = FERDataModule(SyntheticSource(root, num_subjects=8, images_per_class=1, test_subjects=2, image_size=64),
                           image_size=32, loader={"batch_size": 4, "num_workers": 0})
    dm_f32.prepare_data()
    dm_f32.setup("fit")
    a, b = ens.collect(dm_f32.loader("test")), ens.collect(dm_u8.loader("test"))
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-5)
    assert torch.equal(a[1], b[1])


@pytest.mark.slow  # torch.compile takes ~30 s on 2 cores
def test_compiled_members_answer_as_eager_ones():
    torch.manual_seed(0)
    eager = FERClassifier("resnet18", image_size=32).eval()
    compiled = FERClassifier("resnet18", image_size=32).compile_backbone().eval()
    compiled.load_state_dict(eager.state_dict())  # compiling keeps the weights' names
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-4)
        ens_e = EnsembleModule([eager], views=["face", "mouth"])
        ens_c = EnsembleModule([eager], views=["face", "mouth"]).compile_backbone()
        v = torch.randn(2, 2, 3, 32, 32)
        torch.testing.assert_close(ens_c(v), ens_e(v), rtol=1e-4, atol=1e-4)
    assert np.isfinite(compiled(x).detach().numpy()).all()


def test_a_bad_wire_is_named(tmp_path):
    src = SyntheticSource(str(tmp_path / "s"), num_subjects=3, images_per_class=1, test_subjects=1, image_size=64)
    with pytest.raises(ValueError, match="wire must be 'float32' or 'uint8', got 'int8'"):
        FERDataModule(src, loader={"wire": "int8"})
