"""Views missing for some samples: every strategy ignores them per sample, a sample without any
real view falls back to the face, and the per-sample mask survives cv's saved predictions (DDP:
test_module.py's DDP test, ``regions``)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import REPO, tiny_args
from user_sources import ShiftedLandmarks
from user_strategies import MaxConfidence

from lightning_fer import EnsembleModule, FERClassifier, FERDataModule
from lightning_fer.cli import main
from lightning_fer.ensemble import HardVote, SoftVote, Stacking
from lightning_fer.ensemble.functional import missing_views

B, M, V, C = 40, 3, 4, 5


def _case(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, M, V, C, generator=g) * 2
    static = torch.ones(M, V, dtype=torch.bool)
    static[2] = torch.tensor([False, False, True, False])  # member 2: an expert on view 2
    located = torch.rand(B, V, generator=g) > 0.35
    located[:, 0] = True  # view 0 is the face: always there
    labels = torch.randint(0, C, (B,), generator=g)
    return logits, static, located, labels


def _strategies():
    logits, static, located, labels = _case(1)
    _, mask = missing_views(logits, static, located)
    calibrated, stacking = SoftVote(calibrate=True), Stacking()
    for s in (calibrated, stacking):
        s.setup(M, V, C)
        s.fit(logits, labels, mask)
    return {"HardVote": HardVote(), "SoftVote": SoftVote(), "SoftVote (calibrated)": calibrated,
            "Stacking": stacking, "MaxConfidence": MaxConfidence(), "HardVote (weights)": HardVote([1.0, 2.0, 0.5])}


STRATEGIES = list(_strategies())


@pytest.mark.parametrize("name", STRATEGIES)
def test_missing_views_carry_no_information(name):
    strategy = _strategies()[name]
    logits, static, located, _ = _case()
    _, mask = missing_views(logits, static, located)
    garbage = torch.where(mask[..., None], logits, torch.randn_like(logits) * 50)
    torch.testing.assert_close(strategy(garbage, mask), strategy(logits, mask))
    # And they are really ignored, not merely damped: with them, the answer changes somewhere.
    assert not torch.allclose(strategy(garbage, static), strategy(logits, static))


@pytest.mark.parametrize("name", ["HardVote", "SoftVote", "SoftVote (calibrated)", "MaxConfidence", "HardVote (weights)"])
def test_votes_equal_those_without_the_missing_views(name):
    """Sample by sample, the vote equals the vote over only the views located on that face."""
    strategy = _strategies()[name]
    logits, static, located, _ = _case()
    _, mask = missing_views(logits, static, located)
    out = strategy(logits, mask)
    for b in range(B):
        keep = located[b].nonzero().squeeze(1)
        sub = logits[b : b + 1][:, :, keep]
        sub_mask = static[:, keep]
        if name == "HardVote (weights)":  # per-member weights carry over to fewer views
            ref = HardVote([1.0, 2.0, 0.5])(sub, sub_mask)
        elif name == "SoftVote (calibrated)":
            ref = SoftVote(calibrate=True)
            ref.setup(M, len(keep), C)
            ref.log_temperature.data.copy_(strategy.log_temperature.data)
            ref._fitted.fill_(True)
            ref = ref(sub, sub_mask)
        else:
            ref = strategy(sub, sub_mask)
        torch.testing.assert_close(out[b : b + 1], ref)


def test_a_sample_without_any_real_view_falls_back_to_the_face():
    logits, static, located, _ = _case()
    located[:3] = False  # three faces where nothing, not even the face view, is usable
    face_logits = torch.randn(B, M, C)
    face_members = torch.tensor([True, True, False])
    z, mask = missing_views(logits, static, located, face_logits, face_members)
    for b in range(3):
        assert mask[b].tolist() == [[True] * V, [True] * V, [False] * V]
        assert torch.equal(z[b, :2], face_logits[b, :2, None].expand(2, V, C))
    torch.testing.assert_close(SoftVote()(z, mask)[:3], face_logits[:3, :2].softmax(-1).mean(1))
    assert torch.equal(z[3:], logits[3:]) and torch.equal(mask[3:], static & located[3:, None, :])
    # No face-trained member: the ensemble's own mask (the guessed crops) is all there is.
    _, mask = missing_views(logits, static, located, face_logits, torch.zeros(M, dtype=torch.bool))
    assert torch.equal(mask[0], static)


def test_ensemble_uses_the_batch_view_mask_and_the_face_image(tmp_path):
    torch.manual_seed(0)
    face = FERClassifier("resnet18", image_size=32)
    mouth = FERClassifier("sppnet", image_size=32, region="mouth")
    parts = ["left_eye", "mouth"]
    ens = EnsembleModule([face, mouth], SoftVote(), views=parts).eval()
    views, image = torch.randn(3, 2, 3, 32, 32), torch.randn(3, 3, 32, 32)
    located = torch.tensor([[True, True], [True, False], [False, False]])
    out = ens(views, located, image)
    with torch.no_grad():
        lf = face(views.flatten(0, 1)).reshape(3, 2, -1)
        lm = mouth(views[:, 1])
        lface = face(image)
    p = lambda z: z.softmax(-1)  # noqa: E731
    torch.testing.assert_close(out[0], (p(lf[0, 0]) + p(lf[0, 1]) + p(lm[0])) / 3, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], p(lf[1, 0]), atol=1e-5, rtol=1e-5)  # mouth missing: face member's eye view
    torch.testing.assert_close(out[2], p(lface[2]), atol=1e-5, rtol=1e-5)  # nothing located: the whole face
    torch.testing.assert_close(ens(views), SoftVote()(ens.member_logits(views), ens.mask))  # no mask: as before


def _shifted_args(args: list[str]) -> list[str]:
    return ["--data.init_args.source=user_sources.ShiftedLandmarks" if a.startswith("--data.init_args.source=") else a
            for a in args]


def test_cv_saves_the_view_masks_and_votes_with_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parts = ["left_eye", "right_eye", "nose", "mouth", "rest"]
    argv = ["cv", "--lineup.members", json.dumps([str(REPO / "configs" / "demo" / "sppnet.yaml")]), "--output_dir", "cv",
            "--folds.folds", "[0]", "--folds.num_folds", "3", "--collect.views", json.dumps(parts),
            "--strategies", json.dumps([{"class_path": "lightning_fer.ensemble.SoftVote"}]),
            "--lineup.overrides", json.dumps([*_shifted_args(tiny_args(tmp_path / "synthetic", subjects=8)),
                                       "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])]
    result = main(argv)
    saved = torch.load(tmp_path / "cv" / "fold0" / "predictions.pt", weights_only=True)
    src = ShiftedLandmarks(str(tmp_path / "synthetic"), num_subjects=8, images_per_class=1, test_subjects=2,
                           image_size=80)
    dm = FERDataModule(src, views=["face", *parts], image_size=80, folds={"fold": 0, "num_folds": 3},
                       loader={"num_workers": 0})
    dm.prepare_data()
    dm.setup()
    for split in ("val", "test"):
        ds = dm.datasets[split]
        order = {int(i): k for k, i in enumerate(ds.indices)}
        rows = [order[int(i)] for i in saved[f"{split}_index"]]
        assert torch.equal(saved[f"{split}_view_mask"], torch.from_numpy(ds.view_mask[rows]))
        assert not saved[f"{split}_view_mask"].all()
    # The table's soft vote is the vote over the located views of each face.
    logits, located, labels = saved["test_logits"], saved["test_view_mask"], saved["test_labels"]
    z, mask = missing_views(logits[:, :, 1:], saved["collected"][:, 1:], located[:, 1:], logits[:, :, 0], torch.tensor([True]))
    acc = float((SoftVote()(z, mask).argmax(-1) == labels).float().mean())
    assert result["rows"]["SoftVote"][0]["acc"] == pytest.approx(acc)
