"""Distillation's loss on a constructed case, its checks, and the classifier's new options."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_fer import FERClassifier
from lightning_fer.models.backbones import create_backbone
from lightning_fer.models.distill import distill_loss, load_soft_targets


def test_distill_loss_by_hand():
    """Student uniform over 2 classes, teacher (0.8, 0.2), label 0, weight 0.5, T = 2."""
    logits = torch.zeros(1, 2)
    teacher = torch.tensor([[0.8, 0.2]])
    # The teacher at T = 2: softmax(log p / 2) = sqrt(p) / sum sqrt(p) = (2/3, 1/3).
    t = [2 / 3, 1 / 3]
    kl = sum(ti * math.log(ti / 0.5) for ti in t)  # against the student's (1/2, 1/2)
    expected = 0.5 * math.log(2) + 0.5 * 4 * kl  # (1 - w) CE + w T^2 KL
    assert float(distill_loss(logits, torch.tensor([0]), teacher, weight=0.5, temperature=2.0)) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.45984, abs=1e-5)
    # weight 0: plain cross-entropy; a student equal to the teacher: no distillation term.
    assert float(distill_loss(logits, torch.tensor([0]), teacher, weight=0.0)) == pytest.approx(math.log(2))
    assert float(distill_loss(teacher.log(), torch.tensor([0]), teacher, weight=1.0, temperature=3.0)) == pytest.approx(0, abs=1e-6)


def test_distill_loss_counts_only_kept_samples():
    logits, labels, teacher = torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.softmax(torch.randn(4, 3), 1)
    keep = torch.tensor([True, False, True, False])
    both = distill_loss(logits[keep], labels[keep], teacher[keep])
    assert float(distill_loss(logits, labels, teacher, keep=keep)) == pytest.approx(float(both))


def test_gradient_moves_the_student_toward_the_teacher():
    logits = torch.zeros(1, 3, requires_grad=True)
    teacher = torch.tensor([[0.7, 0.2, 0.1]])
    distill_loss(logits, torch.tensor([2]), teacher, weight=1.0).backward()
    assert logits.grad.argmin() == 0  # descending the gradient raises class 0, the teacher's


def test_soft_targets_are_checked(tmp_path):
    names = ["a", "b"]
    path = tmp_path / "soft_targets.pt"
    torch.save({"probs": torch.tensor([[0.9, 0.1]]), "class_names": names,
                "data_print": {"source": "S", "num_folds": 5, "seed": 0, "fold": 0, "train_hash": "h"}}, path)
    same = {"source": "S", "num_folds": 5, "seed": 0, "fold": 0, "train_hash": "h"}
    assert load_soft_targets(path, names, same).shape == (1, 2)
    with pytest.raises(ValueError, match="fold differ"):
        load_soft_targets(path, names, {**same, "fold": 1})
    with pytest.raises(ValueError, match="classes"):
        load_soft_targets(path, ["x", "y"], same)
    with pytest.raises(FileNotFoundError, match="soft_targets.pt"):
        load_soft_targets(tmp_path / "missing.pt", names, same)


@pytest.mark.parametrize("stem,side", [("imagenet", 2), ("small_pool", 3), ("small", 6)])
def test_small_input_stems_keep_wider_feature_maps(stem, side):
    net = create_backbone("resnet18", 7, image_size=48, stem=stem)
    seen = {}
    net.layer4.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    assert net(torch.randn(2, 3, 48, 48)).shape == (2, 7)
    assert seen["shape"][-1] == side


def test_stem_needs_a_resnet():
    with pytest.raises(ValueError, match="ResNet-family"):
        create_backbone("sppnet", 7, image_size=48, stem="small")
    with pytest.raises(ValueError, match="stem must be one of"):
        create_backbone("resnet18", 7, stem="tiny")


def test_cosine_restarts_returns_to_the_peak_each_cycle():
    import lightning as L

    model = FERClassifier("resnet18", image_size=32, optim={"lr": 0.1, "scheduler": "cosine_restarts", "cycles": 3})
    trainer = L.Trainer(max_epochs=3, limit_train_batches=4, logger=False, enable_checkpointing=False)
    data = torch.utils.data.DataLoader([{"views": torch.randn(1, 3, 32, 32), "label": 0, "index": i} for i in range(8)],
                                       batch_size=2)
    lrs = []
    model.on_train_batch_start = lambda batch, i: lrs.append(model.optimizers().param_groups[0]["lr"])
    trainer.fit(model, data)
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.1) and lrs[8] == pytest.approx(0.1)
    assert lrs[3] < 0.02  # the end of a cycle


def test_bad_distillation_options():
    with pytest.raises(ValueError, match="distill.weight"):
        FERClassifier("resnet18", distill={"teacher": "t.pt", "weight": 1.5})
    with pytest.raises(ValueError, match="cycles"):
        FERClassifier("resnet18", optim={"cycles": 0})
