"""A user's strategy that learns, from a module outside the package (tests/user_strategies.py),
through `test`, through `cv`, and reloaded from the ensemble's checkpoint still fitted."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from helpers import REPO, tiny_args

from lightning_fer import EnsembleModule
from lightning_fer.cli import main
from lightning_fer.ensemble import EnsembleStrategy


def test_combine_is_abstract_and_fit_marks_fitted():
    class NoCombine(EnsembleStrategy):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoCombine()
    from user_strategies import BestMember

    s = BestMember()
    s.setup(2, 1, 3)
    assert s.requires_fit and not s.is_fitted
    with pytest.raises(RuntimeError, match="must be fitted"):
        s(torch.randn(4, 2, 1, 3))
    logits = torch.tensor([[[[5.0, 0, 0]], [[0, 5.0, 0]]]]).repeat(6, 1, 1, 1)  # member 0 says 0, member 1 says 1
    s.fit(logits, torch.ones(6, dtype=torch.long))
    assert s.is_fitted and s.accuracy.tolist() == [[0.0], [1.0]]
    assert s(logits).argmax(-1).tolist() == [1] * 6  # follows member 1, the accurate one
    assert s.spec() == {"class_path": "user_strategies.BestMember", "init_args": {}, "unsaved": []}


def test_learning_user_strategy_through_test_and_reloaded_from_the_checkpoint(trained_members, tmp_path,
                                                                              monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    members = "--model.init_args.members=" + json.dumps([str(p) for p in trained_members["ckpts"].values()])
    args = ["--config", str(REPO / "configs" / "demo" / "ensemble_hard.yaml"), *trained_members["args"], members,
            "--model.strategy=user_strategies.BestMember"]
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        cli = main(["test", *args])
    assert "fitted BestMember on 21 held-out val predictions" in caplog.text
    ens = cli.model
    assert type(ens.strategy).__name__ == "BestMember" and ens.strategy.is_fitted
    assert ens.strategy.accuracy.shape == (3, 1) and float(ens.strategy.accuracy.max()) > 0
    ckpt = tmp_path / "ensemble.ckpt"
    cli.trainer.save_checkpoint(ckpt)

    # Reloaded in Python: the same strategy class, fitted, with what it learnt.
    loaded = EnsembleModule.load_from_checkpoint(ckpt, weights_only=True)
    assert type(loaded.strategy).__name__ == "BestMember" and loaded.strategy.is_fitted
    torch.testing.assert_close(loaded.strategy.accuracy, ens.strategy.accuracy)
    views = torch.randn(4, 1, 3, 80, 80)
    torch.testing.assert_close(loaded.eval()(views), ens.eval()(views))

    # Through the CLI with --ckpt_path: restored, not fitted again.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        again = main(["test", *args, f"--ckpt_path={ckpt}"])
    assert "fitted BestMember" not in caplog.text
    assert float(again.trainer.callback_metrics["test/acc"]) == pytest.approx(float(cli.trainer.callback_metrics["test/acc"]))


def test_learning_user_strategy_through_cv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = main(["cv", "--lineup.members", json.dumps([str(REPO / "configs" / "demo" / "sppnet.yaml")]),
                   "--output_dir", "cv", "--folds.folds", "[0]", "--folds.num_folds", "3", "--collect.views", '["face", "mouth"]',
                   "--strategies", json.dumps([{"class_path": "user_strategies.BestMember"},
                                               {"class_path": "user_strategies.MaxConfidence",
                                                "init_args": {"floor": 0.3}}]),
                   "--lineup.overrides", json.dumps([*tiny_args(tmp_path / "synthetic", subjects=8),
                                              "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])])
    saved = torch.load(tmp_path / "cv" / "fold0" / "predictions.pt", weights_only=True)
    logits, labels = saved["val_logits"][:, :, :2], saved["val_labels"]
    hits = (logits.argmax(-1) == labels[:, None, None]).float().mean(0)  # [M, V] held-out accuracy
    m, v = divmod(int(hits.flatten().argmax()), 2)
    test = saved["test_logits"][:, m, v].argmax(-1)
    expected = float((test == saved["test_labels"]).float().mean())
    assert result["rows"]["BestMember"][0]["acc"] == pytest.approx(expected)
    assert "MaxConfidence" in result["rows"]


def test_a_checkpoint_strategy_that_cannot_be_made_again_is_named():
    from lightning_fer.ensemble.strategies import strategy_from_spec

    with pytest.raises(ImportError, match="nowhere.Gone cannot be imported.*PYTHONPATH"):
        strategy_from_spec({"class_path": "nowhere.Gone", "init_args": {}})
    with pytest.raises(TypeError, match="torch.nn.Linear is not an EnsembleStrategy"):
        strategy_from_spec({"class_path": "torch.nn.Linear", "init_args": {}})
    with pytest.raises(ValueError, match=r"made with \['meta_learner'\] \(modules\).*pass strategy="):
        strategy_from_spec({"class_path": "lightning_fer.ensemble.Stacking", "init_args": {}, "unsaved": ["meta_learner"]})
    from lightning_fer.ensemble import Stacking

    assert Stacking(meta_learner=torch.nn.Linear(3, 2)).spec()["unsaved"] == ["meta_learner"]


def test_a_strategy_written_for_0_1_flattens_inside_fit_when_every_view_is_located():
    from user_strategies import AccuracyWeighted

    s = AccuracyWeighted()
    logits, labels = torch.randn(175, 2, 7, 7), torch.randint(0, 7, (175,))
    s.fit(logits, labels, torch.ones(175, 2, 7, dtype=torch.bool))  # the per-sample mask the ensemble passes
    assert s.is_fitted and s.weights.shape == (14,)
    assert s(logits, torch.ones(2, 7, dtype=torch.bool)).shape == (175, 7)
    varied = torch.ones(175, 2, 7, dtype=torch.bool)
    varied[0, 0, 1] = False
    with pytest.raises(ValueError, match=r"flatten takes one \[M, V\] mask.*self.sample_mask"):
        s.flatten(logits, varied)


def test_learnt_state_of_a_new_shape_reloads_into_a_fresh_instance():
    from user_strategies import GrowingPrior

    s = GrowingPrior()
    s.fit(torch.randn(8, 1, 1, 3), torch.tensor([0, 1, 1, 1, 2, 2, 2, 2]))
    fresh = GrowingPrior()
    fresh.load_state_dict(s.state_dict())
    assert fresh.is_fitted and fresh.prior.tolist() == [0.125, 0.375, 0.5]
    x = torch.randn(4, 1, 1, 3)
    torch.testing.assert_close(fresh(x), s(x))


@pytest.mark.parametrize("strategy", ["user_strategies.GrowingPrior", "user_strategies.AccuracyWeighted"])
def test_learning_strategy_with_new_shaped_state_reloads_from_an_ensemble_checkpoint(strategy, trained_members,
                                                                                    tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    members = "--model.init_args.members=" + json.dumps([str(p) for p in trained_members["ckpts"].values()])
    cli = main(["test", "--config", str(REPO / "configs" / "demo" / "ensemble_hard.yaml"), *trained_members["args"],
                members, f"--model.strategy={strategy}"])
    ens = cli.model
    assert ens.strategy.is_fitted
    ckpt = tmp_path / "ensemble.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    loaded = EnsembleModule.load_from_checkpoint(ckpt, weights_only=True)
    assert type(loaded.strategy).__name__ == strategy.split(".")[1] and loaded.strategy.is_fitted
    views = torch.randn(4, 1, 3, 80, 80)
    torch.testing.assert_close(loaded.eval()(views), ens.eval()(views))
