"""Ensemble selection (Caruana et al., 2004) and selective prediction, against hand computations."""

from __future__ import annotations

import pytest
import torch

from lightning_fer.ensemble import EnsembleSelection, agreement, ensemble_selection, selective_accuracy

# Three voters on four samples, two classes (labels 0, 0, 1, 1).
A = [[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]]  # wrong on sample 3: accuracy 3/4, NLL 0.409
B = [[0.6, 0.4], [0.4, 0.6], [0.1, 0.9], [0.3, 0.7]]  # wrong on sample 1: accuracy 3/4, NLL 0.472
C = [[0.2, 0.8], [0.2, 0.8], [0.8, 0.2], [0.8, 0.2]]  # always wrong
LABELS = torch.tensor([0, 0, 1, 1])


def _probs():
    return torch.tensor([A, B, C]).transpose(0, 1)  # [N, E, C]


def test_selection_by_hand_picks_a_member_twice():
    # Round 1: A and B tie on accuracy (3/4); A has the lower NLL (0.409 < 0.472): A.
    # Round 2: A+B is right on all four; A+A and A+C are not: B.
    # Round 3: A+2B is right on all four; 2A+B ties 0.5/0.5 on sample 3 (class 0 wins: wrong),
    # A+B+C ties on sample 1 and is wrong on sample 3: B again.
    counts = ensemble_selection(_probs(), LABELS, rounds=3)
    assert counts.tolist() == [1.0, 2.0, 0.0]
    assert ensemble_selection(_probs(), LABELS, rounds=1).tolist() == [1.0, 0.0, 0.0]


def test_selection_strategy_votes_with_its_counts():
    s = EnsembleSelection(rounds=3)
    logits = _probs().log()[:, :, None]  # [N, M=3, V=1, C]
    s.fit(logits, LABELS)
    assert s.counts.tolist() == [1.0, 2.0, 0.0] and s.weights.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    want = (torch.tensor(A) + 2 * torch.tensor(B)) / 3
    torch.testing.assert_close(s(logits), want)
    fresh = EnsembleSelection(rounds=3)
    fresh.load_state_dict(s.state_dict())  # counts of a new shape reload
    torch.testing.assert_close(fresh(logits), want)


def test_selection_ignores_missing_voters():
    real = torch.ones(4, 3, dtype=torch.bool)
    real[:, 1] = False  # B never saw a face
    counts = ensemble_selection(_probs(), LABELS, rounds=2, real=real)
    assert counts[1] == 0 and counts[0] == 2


def test_selective_accuracy_and_agreement_by_hand():
    conf = torch.tensor([0.95, 0.9, 0.3, 0.8, 0.1, 0.6, 0.7, 0.2, 0.5, 0.4])
    correct = torch.tensor([1, 1, 0, 1, 0, 1, 0, 1, 1, 0])
    # the 8 most confident: 0.95 0.9 0.8 0.7 0.6 0.5 0.4 0.3 -> correct 1 1 1 0 1 1 0 0 = 5/8
    assert selective_accuracy(conf, correct, 0.8) == pytest.approx(5 / 8)
    # the 9 most confident add 0.2 (correct): 6/9
    assert selective_accuracy(conf, correct, 0.9) == pytest.approx(6 / 9)
    assert selective_accuracy(conf, correct, 1.0) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="coverage"):
        selective_accuracy(conf, correct, 0.0)
    logits = _probs().log()
    scores = logits.softmax(-1).mean(1)
    # sample 0: ensemble says 0, A and B say 0, C says 1 -> 2/3
    assert agreement(logits, scores)[0].item() == pytest.approx(2 / 3)
