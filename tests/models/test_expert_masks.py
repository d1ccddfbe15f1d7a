"""Region experts learn and are scored only where their region was located."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from user_sources import ShiftedLandmarks

from lightning_fer import FERClassifier, FERDataModule


@pytest.mark.parametrize("class_weights", [None, [1.0, 2.0, 0.5]])
def test_loss_leaves_out_samples_whose_view_is_missing(class_weights):
    model = FERClassifier("resnet18", num_classes=3, image_size=32, loss={"label_smoothing": 0.1, "class_weights": class_weights})
    if class_weights:
        model.loss_weights = torch.tensor(class_weights)
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    real = torch.tensor([True, False, True, True, False, False])
    expected = F.cross_entropy(logits[real], y[real], weight=model.loss_weights, label_smoothing=0.1)
    torch.testing.assert_close(model._loss(logits, y, real), expected)
    # Garbage in the missing samples changes nothing; a batch with none real gives a zero loss.
    torch.testing.assert_close(model._loss(torch.where(real[:, None], logits, logits * 100), y, real), expected)
    assert float(model._loss(logits, y, torch.zeros(6, dtype=torch.bool))) == 0.0


def test_mouth_expert_trains_and_is_scored_on_located_mouths(tmp_path):
    src = ShiftedLandmarks(str(tmp_path), num_subjects=6, images_per_class=1, test_subjects=1, image_size=64)
    dm = FERDataModule(src, views=["mouth"], image_size=32, folds={"fold": 0, "num_folds": 3},
                       loader={"batch_size": 8, "num_workers": 0})
    model = FERClassifier("resnet18", image_size=32, class_names=dm.class_names)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    assert model.region == "mouth"
    trainer.test(model, dm)
    test = dm.datasets["test"]
    located = int(test.view_mask[:, 0].sum())
    assert 0 < located < len(test)
    # The confusion matrix counts exactly the faces whose mouth was located.
    assert int(model.last_confusion["test"].sum()) == located
