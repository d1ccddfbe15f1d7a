"""Strategies on constructed predictions: masks, calibration, stacking against a biased member."""

from __future__ import annotations

import pytest
import torch
from user_strategies import MaxConfidence

from lightning_fer.ensemble import EnsembleStrategy, HardVote, SoftVote, Stacking


def _constructed(n=1200, c=5, seed=0):
    """Member 0 is right ~60% of the time, member 1 always says (y + 1) mod C with confidence,
    member 2 is right ~45%: a soft vote is dragged off by member 1, stacking can undo it."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, 3, 1, c, generator=g)
    logits[torch.arange(n), 0, 0, y] += 1.8
    logits[torch.arange(n), 1, 0, (y + 1) % c] += 6.0
    logits[torch.arange(n), 2, 0, y] += 1.2
    return logits, y


def test_stacking_beats_soft_vote_with_a_biased_member():
    logits, y = _constructed()
    fit, ev = slice(0, 600), slice(600, None)
    soft = SoftVote()
    stack = Stacking()
    stack.setup(3, 1, 5)
    stack.fit(logits[fit], y[fit])
    acc_soft = (soft(logits[ev]).argmax(-1) == y[ev]).float().mean().item()
    acc_stack = (stack(logits[ev]).argmax(-1) == y[ev]).float().mean().item()
    acc_best = max((logits[ev, i, 0].argmax(-1) == y[ev]).float().mean().item() for i in range(3))
    assert acc_stack > acc_soft + 0.2, (acc_stack, acc_soft)
    assert acc_stack > acc_best  # it even reads member 1's bias as information


def test_stacking_must_be_fitted():
    s = Stacking()
    s.setup(2, 1, 3)
    with pytest.raises(RuntimeError, match="must be fitted"):
        s(torch.randn(4, 2, 1, 3))


def test_stacking_with_a_custom_meta_learner():
    logits, y = _constructed(n=600)
    mlp = torch.nn.Sequential(torch.nn.Linear(15, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    s = Stacking(meta_learner=mlp, max_iter=300)
    s.setup(3, 1, 5)
    s.fit(logits[:400], y[:400])
    assert (s(logits[400:]).argmax(-1) == y[400:]).float().mean() > 0.6


def test_soft_vote_calibration_cools_an_overconfident_member():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (800,), generator=g)
    base = torch.randn(800, 4, generator=g)
    base[torch.arange(800), y] += 1.0
    logits = torch.stack([base, base * 6], 1)[:, :, None]  # member 1: same ranking, 6x too sharp
    s = SoftVote(calibrate=True)
    s.setup(2, 1, 4)
    assert s.requires_fit and not s.is_fitted
    s.fit(logits, y)
    t = s.temperature
    assert t[1] / t[0] == pytest.approx(6, rel=0.1)
    assert s(logits).shape == (800, 4)


def test_mask_removes_member_views():
    logits = torch.zeros(1, 2, 3, 4)
    logits[0, 0, :, 1] = 5  # member 0 says 1 on every view
    logits[0, 1, :, 3] = 5  # member 1 says 3 on every view
    mask = torch.tensor([[True, False, False], [True, True, True]])
    assert HardVote()(logits, mask).argmax(-1).item() == 3  # 3 votes to 1
    assert HardVote(weights=[4.0, 1.0])(logits, mask).argmax(-1).item() == 1  # 4 to 3
    assert SoftVote()(logits, mask)[0, 3] > SoftVote()(logits, mask)[0, 1]
    with pytest.raises(ValueError, match="give 2 or 6"):
        HardVote(weights=[1.0, 2.0, 3.0])(logits, mask)


def test_user_strategy_from_outside_the_package():
    s = MaxConfidence()
    assert isinstance(s, EnsembleStrategy) and not s.requires_fit
    logits = torch.zeros(2, 2, 1, 3)
    logits[:, 0, 0, 0] = 1.0
    logits[:, 1, 0, 2] = 4.0
    assert s(logits).argmax(-1).tolist() == [2, 2]
    with pytest.raises(ValueError, match=r"\[batch, members, views, classes\]"):
        s(torch.zeros(2, 3))


def test_the_one_fit_leaves_out_labels_the_members_do_not_know():
    """``EnsembleNet.fit_cached`` is how both an ensemble and ``cv`` fit a strategy: images
    labelled -1 (another data set's class) are left out, with a per-sample mask too."""
    from lightning_fer.ensemble import Stacking
    from lightning_fer.ensemble.net import EnsembleNet

    torch.manual_seed(0)
    z, y = torch.randn(40, 2, 1, 7), torch.randint(0, 7, (40,))
    y_unknown = y.clone()
    y_unknown[::4] = -1
    mask = torch.ones(40, 2, 1, dtype=torch.bool)
    a, b = Stacking(), Stacking()
    for s in (a, b):
        s.setup(2, 1, 7)
    assert EnsembleNet.fit_cached(a, z, y_unknown, mask) == 30
    b.fit(z[y_unknown >= 0], y[y_unknown >= 0], mask[y_unknown >= 0])
    assert torch.allclose(a(z, mask), b(z, mask), atol=1e-5)
