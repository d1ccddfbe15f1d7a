"""Bagged members: ``training.bootstrap`` draws a seeded bootstrap resample of the training
split, another one for every seed, and ``cv``'s ``bags`` gives every copy and every run its own."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_fer import FERDataModule
from lightning_fer.cv import Lineup
from lightning_fer.cv.plan import member_specs
from lightning_fer.data.augment import TrainingData


def _train(source, tmp_path, bootstrap):
    dm = FERDataModule(source, image_size=32, training=TrainingData(bootstrap=bootstrap),
                       folds={"fold": 0, "num_folds": 3}, records={"cache_dir": str(tmp_path)},
                       loader={"num_workers": 0})
    dm.setup()
    return dm.splits


def test_bootstrap_is_seeded_and_differs_between_members(synthetic_source, tmp_path):
    plain = _train(synthetic_source, tmp_path, None)
    a, a2, b = (_train(synthetic_source, tmp_path, s) for s in (1, 1, 2))
    n = len(plain["train"])
    for s in (a, b):
        assert len(s["train"]) == n  # as many draws as images
        assert set(s["train"].tolist()) <= set(plain["train"].tolist())  # from the training folds only
        assert len(np.unique(s["train"])) < n  # with replacement: some drawn twice, some left out
        np.testing.assert_array_equal(s["val"], plain["val"])  # validation and test stay whole
        np.testing.assert_array_equal(s["test"], plain["test"])
    np.testing.assert_array_equal(a["train"], a2["train"])  # seeded: the same seed, the same resample
    assert not np.array_equal(a["train"], b["train"])
    # The training set really holds the repeats.
    dm = FERDataModule(synthetic_source, image_size=32, training=TrainingData(bootstrap=1),
                       folds={"fold": 0, "num_folds": 3}, records={"cache_dir": str(tmp_path)},
                       loader={"num_workers": 0})
    dm.setup()
    assert len(dm.datasets["train"]) == n


def test_cv_bags_give_every_copy_and_every_seed_its_own_resample():
    specs = member_specs(Lineup(["configs/fer2013/quick_member.yaml", "configs/fer2013/sppnet_small.yaml"],
                                bags={"quick_member": 2}))
    bags = [s for s in specs if s.bag]
    assert [s.name for s in bags] == ["quick_member.bag1", "quick_member.bag2"]
    assert all(s.config == "configs/fer2013/quick_member.yaml" and s.region == "face" for s in bags)
    seeds = {s.bootstrap_seed(seed) for s in bags for seed in (0, 1)}
    assert len(seeds) == 4  # two copies x two seeds: four different resamples
    assert specs[0].bootstrap_seed(0) is None  # the member itself trains on its folds as they are
    with pytest.raises(ValueError, match="bags: 'resnet18' is not a member"):
        member_specs(Lineup(["configs/fer2013/quick_member.yaml"], bags={"resnet18": 2}))
    with pytest.raises(ValueError, match="integer >= 1"):
        member_specs(Lineup(["configs/fer2013/quick_member.yaml"], bags={"quick_member": 0}))
    with pytest.raises(ValueError, match="training.bootstrap"):
        TrainingData(bootstrap=-1)
