"""Folds: disjoint, covering, stratified, subject-disjoint, and reloaded identically."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_fer.data.folds import FoldsMismatchError, load_or_make_folds, make_folds


def _data(n_subjects=40, per=14, classes=7, seed=0):
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for s in range(n_subjects):
        for i in range(per):
            labels.append(int(rng.integers(classes)) if i % 2 else i // 2 % classes)
            groups.append(f"s{s}")
    return np.array(labels), groups


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("k", [3, 5])
def test_folds_disjoint_covering_stratified(grouped, k):
    labels, groups = _data()
    folds = make_folds(labels, groups if grouped else None, num_folds=k, seed=1)
    assert set(folds.tolist()) == set(range(k))  # covering: every sample has exactly one fold
    assert len(folds) == len(labels)
    overall = np.bincount(labels, minlength=7) / len(labels)
    for f in range(k):
        share = np.bincount(labels[folds == f], minlength=7) / (folds == f).sum()
        assert np.abs(share - overall).max() < (0.06 if grouped else 0.02)
    if grouped:
        g = np.array(groups)
        for f in range(k):
            assert not set(g[folds == f]) & set(g[folds != f])


def test_no_subjects_warns(caplog):
    labels, _ = _data()
    with caplog.at_level("WARNING"):
        make_folds(labels, None, 5)
    assert "NOT subject-disjoint" in caplog.text


def test_seed_changes_folds_and_file_reloads(tmp_path):
    labels, groups = _data()
    keys = [f"img{i}.jpg" for i in range(len(labels))]
    path = tmp_path / "folds.json"
    a = load_or_make_folds(path, keys, labels, groups, 5, seed=3)
    b = load_or_make_folds(path, keys, labels, groups, 5, seed=3)
    np.testing.assert_array_equal(a, b)
    # Reloaded by key, not position: the same folds whatever order the records come in.
    order = np.random.default_rng(0).permutation(len(keys))
    c = load_or_make_folds(path, [keys[i] for i in order], labels[order], [groups[i] for i in order], 5, seed=3)
    np.testing.assert_array_equal(c, a[order])
    assert not np.array_equal(make_folds(labels, groups, 5, seed=4), a)


def test_folds_file_mismatch_is_an_error(tmp_path):
    labels, groups = _data()
    keys = [f"img{i}.jpg" for i in range(len(labels))]
    path = tmp_path / "folds.json"
    load_or_make_folds(path, keys, labels, groups, 5, seed=0)
    with pytest.raises(FoldsMismatchError, match="the data changed"):
        load_or_make_folds(path, keys[:-1], labels[:-1], groups[:-1], 5, seed=0)
    with pytest.raises(FoldsMismatchError, match="num_folds=5, seed=0"):
        load_or_make_folds(path, keys, labels, groups, 4, seed=0)


def test_too_few_subjects():
    with pytest.raises(ValueError, match="3 subjects cannot fill 5"):
        make_folds([0, 1, 0, 1, 0, 1], ["a", "a", "b", "b", "c", "c"], 5)
