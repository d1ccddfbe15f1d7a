"""Checkpoints written by an earlier version (tests/assets/checkpoints_v0, made by its make.py
before the 0.2 refactor) still load, and still answer what they answered then."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_fer import EnsembleModule, FERClassifier

OLD = Path(__file__).resolve().parents[1] / "assets" / "checkpoints_v0"


@pytest.fixture(scope="module")
def expected() -> dict:
    exp = torch.load(OLD / "expected.pt", weights_only=True)
    torch.manual_seed(exp["seed"])
    exp["views"] = torch.randn(*exp["shape"])
    return exp


def test_old_member_checkpoint_loads_and_answers_as_before(expected):
    member = FERClassifier.load_from_checkpoint(OLD / "member.ckpt", map_location="cpu", weights_only=True).eval()
    assert member.class_names == expected["class_names"]
    assert member.hparams.backbone == "squeezenet1_1" and member.region == "face"
    assert member.data_fingerprint is not None and member.data_fingerprint["fold"] == 0
    with torch.no_grad():
        torch.testing.assert_close(member(expected["views"][:, 0]), expected["member_logits"], atol=1e-5, rtol=1e-5)


def test_old_ensemble_checkpoint_loads_its_fitted_strategy_and_answers_as_before(expected):
    # The checkpoint names its member by the absolute path it had when written; the weights are
    # in the ensemble's state dict, so any copy of the member file serves to build it.
    ens = EnsembleModule.load_from_checkpoint(
        OLD / "ensemble.ckpt", map_location="cpu", weights_only=True, members=[str(OLD / "member.ckpt")]
    ).eval()
    assert type(ens.strategy).__name__ == expected["strategy"] and ens.strategy.is_fitted
    assert ens.views == ["face", "mouth"]
    with torch.no_grad():
        torch.testing.assert_close(ens(expected["views"]), expected["ensemble_scores"], atol=1e-5, rtol=1e-5)
