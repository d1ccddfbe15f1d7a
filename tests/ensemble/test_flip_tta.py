"""Horizontal-flip test-time augmentation: the mirrored face as one more view."""

from __future__ import annotations

import pytest
import torch

from lightning_fer import FERClassifier
from lightning_fer.ensemble import EnsembleModule, HardVote, SoftVote, Stacking
from lightning_fer.ensemble.members import MemberNet
from lightning_fer.ensemble.net import EnsembleNet


def _member(region="face", seed=0):
    torch.manual_seed(seed)
    return MemberNet.from_classifier(FERClassifier("resnet18", image_size=32, region=region).eval())


def test_soft_vote_with_flip_is_the_mean_of_image_and_mirror_probabilities():
    member = _member()
    net = EnsembleNet([member], SoftVote(), views=["face"], flip=True).eval()
    x = torch.randn(4, 1, 3, 32, 32)
    with torch.no_grad():
        expected = (member(x[:, 0]).softmax(-1) + member(x[:, 0].flip(-1)).softmax(-1)) / 2
        assert torch.allclose(net(x), expected, atol=1e-6)
    assert net.voter_views == ["face", "face_flip"]


@pytest.mark.parametrize("strategy", [HardVote(), SoftVote(), Stacking()], ids=lambda s: type(s).__name__)
def test_every_strategy_counts_the_mirror_as_a_view(strategy):
    """Whole-face members vote on the mirror; experts do not; the strategy sees V + 1 views."""
    members = [_member(), _member("mouth", seed=1)]
    net = EnsembleNet(members, strategy, views=["face", "mouth"], flip=True).eval()
    assert net.mask.tolist() == [[True, True, True], [False, True, False]]
    x = torch.randn(3, 2, 3, 32, 32)
    z = net.member_logits(x)
    assert z.shape == (3, 2, 3, 7)
    with torch.no_grad():
        assert torch.allclose(z[:, 0, 2], members[0](x[:, 0].flip(-1)), atol=1e-5)
    assert not z[:, 1, [0, 2]].any()
    if strategy.requires_fit:
        strategy.fit(*net.voters(x)[:1], torch.tensor([0, 1, 2]), net.mask)
    assert net(x).shape == (3, 7)
    # A view the landmarks could not locate stays out; the mirror follows the face's mask.
    _, mask = net.voters(x, torch.tensor([[True, False], [True, True], [True, True]]))
    assert mask[0].tolist() == [[True, False, True], [False, False, False]]


def test_flip_needs_the_face():
    with pytest.raises(ValueError, match="mirrors the face"):
        EnsembleNet([_member("mouth")], views=["mouth"], flip=True)


def test_ensemble_module_takes_flip():
    ens = EnsembleModule([FERClassifier("resnet18", image_size=32)], SoftVote(), views=["face"], flip=True)
    assert ens.ensemble.voter_views == ["face", "face_flip"]
    assert ens(torch.randn(2, 1, 3, 32, 32)).shape == (2, 7)


def test_one_flip_rule_for_a_model_and_for_cv_rows_from_cached_logits():
    """Issue 35: a model with ``tta: flip`` and ``cv``'s ``+ flip`` row of it (from the logits an
    ensemble keeps on ``face`` and ``face_flip``) give the same scores: the mean of the logits."""
    from lightning_fer.models.evaluation import flip_average

    torch.manual_seed(0)
    model = FERClassifier("resnet18", image_size=32, tta="flip").eval()
    net = EnsembleNet([MemberNet.from_classifier(model)], SoftVote(), views=["face"], flip=True).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        cached = net.member_logits(x[:, None])  # [B, 1, face + face_flip, C], as cv keeps them
        assert torch.allclose(model.evaluate(x), flip_average(cached[:, 0, 0], cached[:, 0, 1]), atol=1e-5)
