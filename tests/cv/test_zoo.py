"""The FER2013 zoo (issue 33): its cv profile, the fixed hold-out slice every member leaves out,
and the paired significance of an ensemble's gain over its best member."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers import REPO

from lightning_fer.cv.significance import compare, mcnemar, paired_bootstrap

ZOO = REPO / "configs" / "fer2013" / "cv_zoo.yaml"


def test_the_paired_bootstrap_interval_has_the_known_answer():
    # 1,000 faces: a is right on 100 that b gets wrong, b on none a gets wrong. The difference is
    # 0.1; its standard error sqrt(0.1 * 0.9 / 1000) = 0.0095, so the 95% interval is about 0.1 -+ 0.0186.
    a = np.zeros(1000, bool)
    a[:100] = True
    diff, lo, hi = paired_bootstrap(a, np.zeros(1000, bool))
    assert diff == pytest.approx(0.1)
    assert lo == pytest.approx(0.1 - 1.96 * 0.0095, abs=0.004) and hi == pytest.approx(0.1 + 1.96 * 0.0095, abs=0.004)
    # equal models: the interval holds 0; swapped models: the mirror image
    both = np.random.default_rng(0).random(500) < 0.6
    d0, lo0, hi0 = paired_bootstrap(both, both)
    assert d0 == lo0 == hi0 == 0.0
    d1, lo1, hi1 = paired_bootstrap(np.zeros(1000, bool), a)
    assert (d1, lo1, hi1) == pytest.approx((-diff, -hi, -lo), abs=0.004)
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, a[:10])


def test_mcnemar_counts_the_disagreements_and_gives_the_exact_p_value():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1], bool)
    a_only, b_only, p = mcnemar(a, b)
    assert (a_only, b_only) == (6, 1)
    assert p == pytest.approx(2 * (1 + 7) / 2 ** 7)  # two-sided binomial: P(X <= 1) doubled, n = 7
    r = compare(a, b, n_boot=2000)
    assert r.a_only == 6 and r.diff == pytest.approx(0.5) and r.lo <= 0.5 <= r.hi


def test_the_zoo_profile_is_diverse_and_holds_out_one_tenth():
    cfg = yaml.safe_load(ZOO.read_text())
    assert cfg["folds"] == {"folds": [0], "num_folds": 10}  # fold 0 of 10: the hold-out slice
    members = [yaml.safe_load((REPO / m).read_text()) for m in cfg["lineup"]["members"]]
    from lightning_fer.build import build

    built = [build(REPO / m, {"trainer": {"logger": False}}) for m in cfg["lineup"]["members"]]
    families = {b.model.hparams.backbone for b in built}
    assert len(families) >= 4, families  # fer_vgg, timm ResNet-10-T, SPP-net, mini-Xception
    sizes = {b.datamodule.image_size for b in built}
    assert len(sizes) >= 3  # 40, 48 and 64 px
    assert any(b.model.mix is not None for b in built)  # CutMix
    assert len(members) >= 4
    student = yaml.safe_load((REPO / cfg["lineup"]["students"][0]).read_text())
    assert student["base"] == "vgg48.yaml"  # the student is a member's network: its speed


def test_the_hold_out_slice_is_fixed_persisted_stratified_and_left_out_by_every_member(fer2013_root, tmp_path):
    from lightning_fer.build import build

    cfg = yaml.safe_load(ZOO.read_text())
    data = {"data": {"init_args": {"root": str(fer2013_root), "folds": {"fold": 0, "num_folds": 10},
                                   "records": {"cache_dir": str(tmp_path)}, "loader": {"num_workers": 0}}}, "trainer": {"logger": False}}
    vals, trains = [], []
    for m in cfg["lineup"]["members"]:
        dm = build(REPO / m, data).datamodule
        dm.prepare_data()
        dm.setup("fit")
        vals.append(np.sort(dm.splits["val"]))
        trains.append(dm.splits["train"])
    folds_file = dm._folds_path()
    assert folds_file.is_file()  # persisted: every member, and the strategies, read the same file
    for v, t in zip(vals, trains):
        assert np.array_equal(v, vals[0])  # fixed: the same slice for every member
        assert not set(v.tolist()) & set(t.tolist())  # left out of every member's training
    labels = np.asarray(dm.records.labels)
    used = np.concatenate([vals[0], trains[0]])
    share = len(vals[0]) / len(used)
    assert 0.095 < share < 0.105
    overall = np.bincount(labels[used], minlength=7) / len(used)
    held = np.bincount(labels[vals[0]], minlength=7) / len(vals[0])
    assert np.abs(held - overall).max() < 0.005  # stratified
