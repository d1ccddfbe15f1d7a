"""hard_vote and soft_vote against scikit-learn's VotingClassifier arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import VotingClassifier
from sklearn.preprocessing import LabelEncoder

from lightning_fer.ensemble.functional import hard_vote, soft_vote


class Fixed:
    """A 'fitted' estimator that returns given predictions (VotingClassifier only calls these)."""

    def __init__(self, probs):
        self.probs = probs

    def predict(self, X):
        return self.probs.argmax(1)

    def predict_proba(self, X):
        return self.probs


def sklearn_vote(logits: torch.Tensor, weights, voting: str) -> np.ndarray:
    n, e, c = logits.shape
    probs = logits.softmax(-1).double().numpy()
    ests = [Fixed(probs[:, i]) for i in range(e)]
    vc = VotingClassifier([(f"m{i}", est) for i, est in enumerate(ests)], voting=voting, weights=weights)
    vc.estimators_ = ests
    vc.le_ = LabelEncoder().fit(np.arange(c))
    vc.classes_ = vc.le_.classes_
    return vc.predict(np.zeros((n, 1)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weighted", [False, True])
def test_hard_vote_matches_sklearn(seed, weighted):
    g = torch.Generator().manual_seed(seed)
    e, c = [(3, 3), (4, 5), (6, 7), (2, 4), (5, 2), (8, 7)][seed]
    logits = torch.randn(400, e, c, generator=g) * 3
    # Integer weights make exact ties common; that is the interesting case.
    weights = torch.randint(1, 4, (e,), generator=g).tolist() if weighted else None
    ours = hard_vote(logits, weights, tie_break="lowest").argmax(-1).numpy()
    np.testing.assert_array_equal(ours, sklearn_vote(logits, weights, "hard"))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_vote_matches_sklearn(seed, weighted):
    g = torch.Generator().manual_seed(100 + seed)
    e, c = 2 + seed, 3 + seed % 4
    logits = torch.randn(300, e, c, generator=g) * 2
    weights = torch.rand(e, generator=g).add(0.1).tolist() if weighted else None
    ours = soft_vote(logits, weights)
    np.testing.assert_array_equal(ours.argmax(-1).numpy(), sklearn_vote(logits, weights, "soft"))
    w = np.ones(e) if weights is None else np.array(weights)
    expected = np.average(logits.softmax(-1).double().numpy(), axis=1, weights=w)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)


def test_ties_are_broken_as_documented():
    # Two voters for class 2, two for class 0; class 2's voters are more confident.
    logits = torch.tensor([[[5.0, 0, 0], [4.0, 0, 0], [0, 0, 9.0], [0, 0, 8.0]]]).log_softmax(-1)
    logits[0, 0] = torch.tensor([0.2, 0.0, 0.0])  # a weak vote for class 0
    assert hard_vote(logits, tie_break="lowest").argmax(-1).item() == 0
    assert hard_vote(logits, tie_break="probability").argmax(-1).item() == 2
    shares = hard_vote(logits)
    torch.testing.assert_close(shares.sum(-1), torch.ones(1), atol=1e-5, rtol=0)
    # Weights break the tie too, and a zero weight removes a voter.
    assert hard_vote(logits, torch.tensor([1.0, 2.0, 1.0, 1.0])).argmax(-1).item() == 0
    assert hard_vote(logits, torch.tensor([1.0, 1.0, 0.0, 1.0]), tie_break="lowest").argmax(-1).item() == 0


def test_bad_weights():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        hard_vote(torch.randn(2, 3, 4), torch.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        soft_vote(torch.randn(2, 3, 4), torch.tensor([1.0, -1.0, 1.0]))
