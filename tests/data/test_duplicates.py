"""Identical images: found by content, one copy kept in the protected split, conflicts dropped;
and the stratified training subset."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_fer import FERDataModule
from lightning_fer.data.duplicates import file_digest


def _face(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(path)


@pytest.fixture
def folder_with_duplicates(tmp_path):
    """train/ and val/ (= test) folders with: a train copy of a test image, a train pair with
    conflicting labels, a same-label pair inside train, and a pair inside test."""
    root = tmp_path / "faces"
    n = 0
    for split in ("train", "val"):
        for label in ("happy", "sad", "angry"):
            for i in range(6 if split == "train" else 3):
                n += 1
                _face(root / split / label / f"{split}_{label}_{i}.png", n)
    copy = shutil.copyfile
    copy(root / "val/happy/val_happy_0.png", root / "train/happy/leak.png")  # copy of a test image
    copy(root / "train/sad/train_sad_0.png", root / "train/angry/conflict.png")  # conflicting labels
    copy(root / "train/angry/train_angry_1.png", root / "train/angry/dup.png")  # plain duplicate
    copy(root / "val/sad/val_sad_1.png", root / "val/sad/dup_in_test.png")  # duplicate inside test
    return root


def _dm(root, tmp_path, duplicates: str):
    return FERDataModule("folder", root=str(root), landmarks="template", image_size=32, folds={"num_folds": 3},
                         records={"split_map": {"val": "test"}, "cache_dir": str(tmp_path / "cache"),
                                  "duplicates": duplicates}, loader={"num_workers": 0})


def test_drop_keeps_one_copy_in_the_protected_split(folder_with_duplicates, tmp_path):
    root = folder_with_duplicates
    dm = _dm(root, tmp_path, duplicates="drop")
    dm.prepare_data()
    dm.setup("fit")
    rep = dm.duplicate_report
    assert (rep.groups, rep.files, rep.conflicting_groups, rep.cross_split_groups) == (4, 8, 1, 1)
    assert dict(rep.dropped) == {"copy of a test image": 1, "conflicting labels": 2, "duplicate": 2}
    assert dict(rep.dropped_by_split) == {"train": 4, "test": 1}
    used = {Path(dm.records[i].path).name: split for split, ids in dm.splits.items() for i in ids}
    assert "leak.png" not in used and used["val_happy_0.png"] == "test"
    assert "conflict.png" not in used and "train_sad_0.png" not in used
    assert ("dup.png" in used) != ("train_angry_1.png" in used)
    assert ("dup_in_test.png" in used) != ("val_sad_1.png" in used)
    # No content is in two places any more.
    digests = Counter(file_digest(dm.records[i].path) for ids in dm.splits.values() for i in ids)
    assert max(digests.values()) == 1
    rows = list(csv.DictReader(open(dm.cache_dir / "duplicates.csv")))
    assert len(rows) == 8 and Counter(r["action"] for r in rows) == {"dropped": 5, "kept": 3}
    assert {r["reason"] for r in rows if Path(r["path"]).name == "leak.png"} == {"copy of a test image"}
    # Folds for the de-duplicated pool live in their own file beside the plain ones.
    assert dm._folds_path().name.endswith("-dedup.json")


def test_keep_leaves_duplicates_alone(folder_with_duplicates, tmp_path):
    dm = _dm(folder_with_duplicates, tmp_path, duplicates="keep")
    dm.prepare_data()
    dm.setup("fit")
    assert dm.duplicate_report is None
    assert sum(len(v) for v in dm.splits.values()) == 6 * 3 + 3 * 3 + 4
    with pytest.raises(ValueError, match="duplicates must be 'keep' or 'drop'"):
        _dm(folder_with_duplicates, tmp_path, duplicates="merge")


def test_fer2013_duplicates_match_the_published_list(fer2013_root, tmp_path):
    """Content hashing finds exactly the 1,273 groups listed in FER2013's duplicates.csv, and
    after dropping no test image has a copy in the training pool."""
    dm = FERDataModule("folder", root=str(fer2013_root), landmarks="template",
                       records={"split_map": {"val": "test"}, "cache_dir": str(tmp_path / "cache"), "duplicates": "drop"},
                       loader={"num_workers": 2})
    dm.prepare_data()
    dm.setup("fit")
    rep = dm.duplicate_report
    assert (rep.groups, rep.files, rep.conflicting_groups, rep.cross_split_groups) == (1273, 2805, 47, 270)
    listed: dict[str, set] = {}
    for r in csv.DictReader(open(fer2013_root / "duplicates.csv")):
        listed.setdefault(r["group"], set()).add(r["path"])
    found: dict[str, set] = {}
    for r in csv.DictReader(open(dm.cache_dir / "duplicates.csv")):
        found.setdefault(r["group"], set()).add(str(Path(r["path"]).relative_to(fer2013_root)))
    assert set(map(frozenset, listed.values())) == set(map(frozenset, found.values()))
    test = {file_digest(dm.records[i].path) for i in dm.splits["test"]}
    pool = {file_digest(dm.records[i].path) for s in ("train", "val") for i in dm.splits[s]}
    assert not test & pool
    assert len(dm.splits["test"]) == 3589 - rep.dropped_by_split["test"]


def test_train_fraction_is_stratified_and_seeded(synthetic_source, tmp_path):
    def splits(fraction, seed=0):
        dm = FERDataModule(synthetic_source, image_size=32, training={"fraction": fraction},
                           folds={"num_folds": 3, "seed": seed}, records={"cache_dir": str(tmp_path / f"c{seed}")},
                           loader={"num_workers": 0})
        dm.prepare_data()
        dm.setup("fit")
        return dm

    full, half = splits(1.0), splits(0.5)
    assert np.array_equal(full.splits["val"], half.splits["val"])
    assert np.array_equal(full.splits["test"], half.splits["test"])
    assert set(half.splits["train"]) < set(full.splits["train"])
    assert len(half.splits["train"]) == round(len(full.splits["train"]) * 0.5)
    per_full, per_half = full.train_class_counts(), half.train_class_counts()
    assert np.all(np.abs(per_half - per_full * 0.5) <= 1)  # every class halved, within rounding
    assert np.array_equal(half.splits["train"], splits(0.5).splits["train"])  # same seed, same subset
    with pytest.raises(ValueError, match=r"training.fraction must be in \(0, 1\]"):
        FERDataModule(synthetic_source, training={"fraction": 0.0})
    with pytest.raises(ValueError, match="fewer than 7 training images"):
        splits(0.01)
