"""Each reader on a fixture written in its source's real format."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from lightning_fer.data.classes import BASIC7, BASIC8, canonical_label
from lightning_fer.data.sources import (
    AFFECTNET_COLUMNS,
    AffectNetSource,
    DataFormatError,
    FolderSource,
    ManifestSource,
    parse_landmarks,
)


def _jpg(path: Path, seed: int = 0, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)


def _lm68(rng) -> str:
    return ";".join(f"{v:.2f}" for v in rng.uniform(10, 90, 136))


def write_affectnet(root: Path, val_header: bool, codes=range(11), per_code: int = 2) -> dict[int, int]:
    """AffectNet's layout: Manually_Annotated_file_lists/{training,validation}.csv beside
    Manually_Annotated_Images/<dir>/<file>.jpg, 68-point landmarks, expression codes 0-10."""
    rng = np.random.default_rng(0)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    counts = {}
    for name, header in (("training", True), ("validation", val_header)):
        rows = []
        for code in codes:
            for i in range(per_code):
                rel = f"{code + 100}/{name}_{code}_{i}.jpg"
                _jpg(root / "Manually_Annotated_Images" / rel, seed=code * 10 + i, size=100)
                rows.append([rel, 5, 6, 80, 85, _lm68(rng), code, f"{rng.uniform(-1, 1):.3f}", f"{rng.uniform(-1, 1):.3f}"])
                counts[code] = counts.get(code, 0) + 1
        with open(lists / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            if header:
                w.writerow(AFFECTNET_COLUMNS)
            w.writerows(rows)
    return counts


@pytest.mark.parametrize("val_header", [True, False])
@pytest.mark.parametrize("class_set", [7, 8])
def test_affectnet_reads_official_csvs(tmp_path, val_header, class_set):
    write_affectnet(tmp_path, val_header)
    records, class_names, report = AffectNetSource(tmp_path, class_set=class_set).load()
    assert class_names == list(BASIC7 if class_set == 7 else BASIC8)
    kept_codes = set(range(class_set))
    assert len(records) == 2 * 2 * class_set  # 2 per code, training and validation
    assert {r.label for r in records} == kept_codes
    assert {r.split for r in records} == {"train", "test"}  # official validation = test
    assert all(r.landmarks.shape == (68, 2) for r in records)
    assert all(r.box == (5.0, 6.0, 80.0, 85.0) for r in records)
    assert all(Path(r.path).is_file() for r in records)
    # Each removal rule counted: codes 8, 9, 10 (and 7 in the 7-class set), both files.
    removed = dict(report.removed)
    assert removed["expression 8 (none) is not an expression"] == 4
    assert removed["expression 9 (uncertain) is not an expression"] == 4
    assert removed["expression 10 (no-face) is not an expression"] == 4
    assert removed.get("expression 7 (contempt) outside the 7-class set", 0) == (4 if class_set == 7 else 0)
    assert report.kept == len(records)


def test_affectnet_csvs_at_root_and_explicit(tmp_path):
    write_affectnet(tmp_path, True, codes=range(7), per_code=1)
    lists = tmp_path / "Manually_Annotated_file_lists"
    for f in lists.iterdir():
        f.rename(tmp_path / f.name)
    lists.rmdir()
    records, _, _ = AffectNetSource(tmp_path).load()
    assert len(records) == 14
    records, _, _ = AffectNetSource(tmp_path, training_csv=str(tmp_path / "training.csv")).load()
    assert len(records) == 14


def _rewrite(path: Path, edit) -> None:
    rows = list(csv.reader(open(path)))
    edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_affectnet_unknown_label_names_file_and_row(tmp_path):
    write_affectnet(tmp_path, True, codes=range(3), per_code=1)
    train = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    _rewrite(train, lambda rows: rows[2].__setitem__(6, "12"))
    with pytest.raises(DataFormatError, match=r"training\.csv:3: unknown expression label 12"):
        AffectNetSource(tmp_path).load()


def test_affectnet_malformed_landmarks_names_row(tmp_path):
    write_affectnet(tmp_path, True, codes=range(3), per_code=1)
    train = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    _rewrite(train, lambda rows: rows[1].__setitem__(5, "1;2;three;4"))
    with pytest.raises(DataFormatError, match=r"training\.csv:2: malformed landmarks"):
        AffectNetSource(tmp_path).load()
    _rewrite(train, lambda rows: rows[1].__setitem__(5, "1;2;3;4"))
    with pytest.raises(DataFormatError, match=r"training\.csv:2: malformed landmarks: 4 numbers"):
        AffectNetSource(tmp_path).load()


def test_affectnet_missing_column(tmp_path):
    write_affectnet(tmp_path, True, codes=range(3), per_code=1)
    train = tmp_path / "Manually_Annotated_file_lists" / "training.csv"
    _rewrite(train, lambda rows: [r.pop(6) for r in rows])
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['expression'\]"):
        AffectNetSource(tmp_path).load()


def test_affectnet_missing_csv_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="training_csv"):
        AffectNetSource(tmp_path).load()


def test_folder_source_with_splits_and_aliases(tmp_path):
    for split, n in (("train", 3), ("PublicTest", 2)):
        for folder in ("angry", "happiness", "Sadness", "neutral"):
            for i in range(n):
                _jpg(tmp_path / split / folder / f"{i}.png", seed=i)
    (tmp_path / "train" / "angry" / "notes.txt").write_text("not an image")
    records, class_names, report = FolderSource(tmp_path, split_map={"val": "test"}).load()
    assert class_names == ["neutral", "happy", "sad", "anger"]  # AffectNet's order
    assert len(records) == 4 * 5
    assert {r.split for r in records} == {"train", "test"}
    by_name = {Path(r.path).parent.name: class_names[r.label] for r in records}
    assert by_name == {"angry": "anger", "happiness": "happy", "Sadness": "sad", "neutral": "neutral"}
    assert report.removed == {"not an image extension (.txt)": 1}


def test_folder_source_without_splits_and_fixed_classes(tmp_path):
    for folder in ("surprised", "fear"):
        _jpg(tmp_path / folder / "a.jpg")
    records, class_names, _ = FolderSource(tmp_path, class_names=list(BASIC7)).load()
    assert class_names == list(BASIC7)
    assert sorted(class_names[r.label] for r in records) == ["fear", "surprise"]
    assert all(r.split is None for r in records)


def test_folder_source_unknown_folder(tmp_path):
    _jpg(tmp_path / "happy" / "a.jpg")
    _jpg(tmp_path / "bored" / "a.jpg")
    with pytest.raises(DataFormatError, match="'bored' is not an expression"):
        FolderSource(tmp_path).load()


def test_fer2013_as_folder_source(fer2013_root):
    records, class_names, report = FolderSource(fer2013_root, split_map={"val": "test"}).load()
    assert sorted(class_names) == sorted(BASIC7)
    counts = {}
    for r in records:
        counts[(r.split, class_names[r.label])] = counts.get((r.split, class_names[r.label]), 0) + 1
    # The README's table.
    assert counts[("train", "anger")] == 3995 and counts[("train", "happy")] == 7215
    assert counts[("test", "disgust")] == 56 and counts[("test", "surprise")] == 415
    assert sum(v for (s, _), v in counts.items() if s == "train") == 28709
    assert sum(v for (s, _), v in counts.items() if s == "test") == 3589


def test_manifest_source_all_columns(tmp_path):
    _jpg(tmp_path / "img" / "a.jpg")
    _jpg(tmp_path / "img" / "b.jpg")
    _jpg(tmp_path / "img" / "c.jpg")
    lm5 = "1;2;3;4;5;6;7;8;9;10"
    (tmp_path / "faces.csv").write_text(
        "path,label,subject,split,face_x,face_y,face_width,face_height,landmarks\n"
        f"img/a.jpg,Angry,p1,train,1,2,20,21,{lm5}\n"
        f"img/b.jpg,happiness,p2,validation,,,,,\n"
        f"{tmp_path / 'img' / 'c.jpg'},sad,,,,,,,\n"
    )
    records, class_names, _ = ManifestSource(tmp_path / "faces.csv").load()
    assert class_names == ["happy", "sad", "anger"]
    a, b, c = records
    assert (class_names[a.label], a.subject, a.split, a.box) == ("anger", "p1", "train", (1.0, 2.0, 20.0, 21.0))
    assert a.landmarks.shape == (5, 2) and a.landmarks[4, 1] == 10
    assert (b.split, b.box, b.landmarks) == ("val", None, None)
    assert Path(a.path) == tmp_path / "img" / "a.jpg" and Path(c.path).is_file()


def test_manifest_integer_labels_with_class_names(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.jpg,0\nb.jpg,6\n")
    records, names, _ = ManifestSource(tmp_path / "m.csv", class_names=list(BASIC7)).load()
    assert [names[r.label] for r in records] == ["neutral", "anger"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,label\na.jpg,bored\n", r"m\.csv:2: unknown label 'bored'"),
        ("path\na.jpg\n", r"missing column\(s\) \['label'\]"),
        ("path,label,landmarks\na.jpg,happy,1;2;x\n", r"m\.csv:2: malformed landmarks"),
        ("path,label,face_x,face_y,face_width,face_height\na.jpg,happy,1,2,0,5\n", r"m\.csv:2: face box"),
        ("path,label,split\na.jpg,happy,holdout\n", r"m\.csv:2: split 'holdout'"),
    ],
)
def test_manifest_bad_rows_name_file_and_row(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DataFormatError, match=message):
        ManifestSource(tmp_path / "m.csv").load()


def test_parse_landmarks_and_aliases():
    assert parse_landmarks(";".join(["1"] * 136), "x").shape == (68, 2)
    with pytest.raises(DataFormatError, match="x: malformed landmarks: 3 numbers"):
        parse_landmarks("1;2;3", "x")
    assert canonical_label("Fearful") == "fear" and canonical_label("surprised") == "surprise"
