"""Bad options and inputs of the newer entry points: a clear error that names the culprit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from lightning_fer.cli import main
from lightning_fer.cv import Lineup, run_cv
from lightning_fer.data.sources import FolderSource
from lightning_fer.loggers import read_offline_run
from lightning_fer.predict.inputs import list_photos
from lightning_fer.predict.writers import FacePredictionWriter


def test_prediction_output_must_be_csv_or_json():
    with pytest.raises(ValueError, match=r"'faces\.txt': must end in \.csv or \.json"):
        FacePredictionWriter("faces.txt")


def test_predict_path_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder; give a photo, a video or a folder"):
        list_photos(tmp_path / "nowhere")


def test_export_output_defaults_under_runs_and_format_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "lightning_fer", "export", "--config", str(REPO / "configs/demo/sppnet.yaml"),
                           "--format=tflite"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-1500:]
    assert errors[0].startswith("error: --format: 'tflite' is not accepted (expected Literal['torchscript', 'onnx'])")
    path, _ = main(["export", "--config", str(REPO / "configs/demo/sppnet.yaml"), "--data.init_args.loader.num_workers=0"])
    assert path == Path("runs/export/sppnet.pt") and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing beside it


def test_cv_members_need_distinct_names(tmp_path):
    cfg = str(REPO / "configs/demo/sppnet.yaml")
    with pytest.raises(ValueError, match="distinct file names"):
        run_cv(Lineup([cfg, cfg]), output_dir=str(tmp_path))


def test_split_map_targets_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"split_map\['val'\] = 'holdout'"):
        FolderSource(tmp_path, split_map={"val": "holdout"})


def test_offline_run_reader_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run-\\*.wandb file"):
        read_offline_run(tmp_path, timeout=0)
