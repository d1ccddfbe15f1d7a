"""Table II's calibration columns against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_fer.cv.report import NLL_FLOOR, scores


def test_ece_and_nll_by_hand():
    # Confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right).
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 1, 0])
    s = scores(probs, labels, 2)
    # Bin of 0.9: accuracy 1/2, confidence 0.9 -> |0.5 - 0.9| * 2/4; bin of 0.6: 1 vs 0.6 -> 0.4 * 2/4.
    assert s["ece"] == pytest.approx(0.4 * 0.5 + 0.4 * 0.5, abs=1e-6)
    assert s["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.1) + 2 * math.log(0.6)) / 4, abs=1e-6)
    assert s["acc"] == pytest.approx(0.75)


def test_perfectly_calibrated_and_hard_votes():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = scores(probs, torch.tensor([0, 1]), 2)
    assert s["ece"] == pytest.approx(0.0, abs=1e-7) and s["nll"] == pytest.approx(0.0, abs=1e-7)
    # A confident wrong hard vote costs -log(NLL_FLOOR), not infinity.
    s = scores(probs, torch.tensor([1, 1]), 2)
    assert s["nll"] == pytest.approx(-math.log(NLL_FLOOR) / 2)
    # Vote shares that do not sum to one are renormalised.
    assert scores(torch.tensor([[2.0, 2.0]]), torch.tensor([0]), 2)["nll"] == pytest.approx(math.log(2))


def test_selective_accuracy_columns_rank_by_confidence_and_by_agreement():
    import torch

    from lightning_fer.cv.report import selective
    from lightning_fer.ensemble.functional import agreement

    # Three voters on five faces; the ensemble (their mean probability) is right on faces 0-2.
    logits = torch.tensor([[[4.0, 0], [3.0, 0], [2.0, 0]],      # says 0, all 3 agree: right
                           [[0, 2.0], [0, 2.0], [1.0, 0]],      # says 1, 2 of 3 agree: right
                           [[0, 1.0], [0, 1.0], [0, 1.0]],      # says 1, all 3 agree: right
                           [[5.0, 0], [0, 1.0], [0, 1.0]],      # says 0, 1 of 3 agrees: wrong
                           [[0, 9.0], [2.0, 0], [2.0, 0]]])     # says 0, 2 of 3 agree: wrong
    labels = torch.tensor([0, 1, 1, 1, 1])
    probs = logits.softmax(-1).mean(1)
    agree = agreement(logits, probs)
    s = selective(probs, labels, agree)
    assert probs.argmax(1).tolist() == [0, 1, 1, 0, 0]
    # 80% coverage keeps 4 faces: by agreement the two unanimous ones, then faces 1 and 4 (2 of
    # 3; ties keep sample order), leaving out face 3: 3 right of 4.
    assert s["acc80_agree"] == pytest.approx(0.75)
    assert s["acc90_agree"] == pytest.approx(0.6) and s["acc90_conf"] == pytest.approx(0.6)  # all 5
    by_conf = probs.max(1).values.argsort(descending=True, stable=True)[:4]
    assert s["acc80_conf"] == pytest.approx(float((probs.argmax(1) == labels)[by_conf].float().mean()))
    assert selective(probs, labels)["acc80_agree"] != selective(probs, labels)["acc80_agree"]  # NaN for a member
