"""FERDataModule end to end on the demo faces and on real FER2013 faces."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest
import torch

from lightning_fer import FERDataModule
from lightning_fer.data.regions import REGIONS
from lightning_fer.data.sources import FolderSource


@pytest.mark.parametrize("views", [["face"], list(REGIONS), ["mouth"]])
def test_batches_have_the_documented_shapes(synthetic_source, tmp_path, views):
    dm = FERDataModule(synthetic_source, views=views, image_size=40, records={"cache_dir": str(tmp_path)},
                       loader={"batch_size": 5, "num_workers": 0})
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 40, 40)
    assert batch["views"].shape == (5, len(views), 3, 40, 40)
    assert batch["views"].dtype == torch.float32 and torch.isfinite(batch["views"]).all()
    assert batch["label"].shape == (5,) and batch["label"].max() < dm.num_classes == 7
    if views[0] == "face":
        torch.testing.assert_close(batch["image"], batch["views"][:, 0])
    # ImageNet normalisation: roughly centred values.
    assert -1.5 < batch["image"].mean() < 1.5


def test_splits_folds_and_subjects(synthetic_source, tmp_path):
    dm = FERDataModule(synthetic_source, image_size=32, folds={"fold": 1, "num_folds": 3},
                       records={"cache_dir": str(tmp_path)}, loader={"num_workers": 0})
    dm.prepare_data()
    dm.setup()
    recs = dm.records
    subj = {k: {recs[i].subject for i in v} for k, v in dm.splits.items()}
    assert subj["test"] == {"s006", "s007"}  # the held-out subjects of the demo set
    assert not subj["train"] & subj["val"] and not subj["test"] & (subj["train"] | subj["val"])
    n = sum(len(v) for v in dm.splits.values())
    assert n == len(recs) == 8 * 7 * 2
    assert dm.index_report.kinds["annotation"] == len(recs)
    # Another module with the same settings reads the same folds from the file.
    dm2 = FERDataModule(synthetic_source, image_size=32, folds={"fold": 1, "num_folds": 3},
                        records={"cache_dir": str(tmp_path)}, loader={"num_workers": 0})
    dm2.setup()
    for k in dm.splits:
        np.testing.assert_array_equal(dm.splits[k], dm2.splits[k])
    assert dm.fingerprint() == dm2.fingerprint()
    # Every fold validates different images, and the folds cover the pool.
    vals = []
    for fold in range(3):
        d = FERDataModule(synthetic_source, image_size=32, folds={"fold": fold, "num_folds": 3},
                          records={"cache_dir": str(tmp_path)}, loader={"num_workers": 0})
        d.setup()
        vals.append(set(d.splits["val"].tolist()))
    assert sum(map(len, vals)) == len(set().union(*vals)) == n - len(dm.splits["test"])


def test_balanced_sampler_and_workers(synthetic_source, tmp_path):
    dm = FERDataModule(synthetic_source, image_size=32, training={"balanced_sampler": True},
                       records={"cache_dir": str(tmp_path)}, loader={"batch_size": 8, "num_workers": 2})
    dm.prepare_data()
    dm.setup("fit")
    labels = torch.cat([b["label"] for b in dm.train_dataloader()])
    assert len(labels) == len(dm.datasets["train"])
    assert len(labels.unique()) == 7
    # Two workers must not repeat each other's augmentation.
    loader = dm.train_dataloader()
    b1, b2 = list(loader)[:2]
    assert not torch.equal(b1["views"], b2["views"])


def test_official_splits_without_val_train_on_everything(synthetic_source, tmp_path, caplog):
    """fold=None on data with train and test only (FER2013's folders): every training image
    trains, nothing validates, and the log says so."""
    dm = FERDataModule(synthetic_source, image_size=32, folds={"fold": None}, records={"cache_dir": str(tmp_path)},
                       loader={"num_workers": 0})
    with caplog.at_level("WARNING", logger="lightning_fer"):
        dm.setup()
    assert "no official 'val' split" in caplog.text
    split = [r.split for r in dm.records]
    assert len(dm.splits["val"]) == 0
    assert len(dm.splits["train"]) == sum(s != "test" for s in split) and len(dm.splits["test"]) == split.count("test")


def test_options_are_checked(synthetic_source):
    with pytest.raises(ValueError, match="fold must be in"):
        FERDataModule(synthetic_source, folds={"fold": 5, "num_folds": 5})
    with pytest.raises(ValueError, match="unknown view"):
        FERDataModule(synthetic_source, views=["ear"])
    with pytest.raises(ValueError, match="needs a root"):
        FERDataModule("folder")


def test_fer2013_sample_through_the_datamodule(fer2013_root, tmp_path):
    """Real 48x48 faces: MTCNN with template fallback, all six views."""
    records, names, _ = FolderSource(fer2013_root).load()
    rng = random.Random(0)
    sample = [r for r in records if r.split == "train"]
    rng.shuffle(sample)
    sample = sample[:60] + [r for r in records if r.split == "val"][:10]
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for r in sample:
            w.writerow([r.path, names[r.label], "test" if r.split == "val" else ""])
    dm = FERDataModule("manifest", root=str(tmp_path / "m.csv"), views=list(REGIONS), image_size=48,
                       folds={"num_folds": 3}, records={"cache_dir": str(tmp_path / "cache")},
                       loader={"batch_size": 16, "num_workers": 0})
    dm.prepare_data()
    rep = dm.index_report
    assert rep.kinds["mtcnn"] + rep.kinds["template_fallback"] == 70 and rep.kinds["mtcnn"] > 40
    dm.setup()
    assert len(dm.datasets["test"]) == 10
    batch = next(iter(dm.train_dataloader()))
    assert batch["views"].shape == (16, 6, 3, 48, 48)
