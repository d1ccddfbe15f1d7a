"""int8 and bf16 inference (issue 36): the shipped int8 versions and bf16 autocast agree with float32
on real faces, ``auto`` refuses an int8 version that failed its ship-time check, and one that
disagrees on the first faces falls back."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

pytest.importorskip("onnxruntime", reason="int8 inference needs the onnx extra: pip install -e '.[onnx]'")

import lightning_fer  # noqa: E402
from lightning_fer import shipped  # noqa: E402
from lightning_fer.cli import main  # noqa: E402
from lightning_fer.predict.runtimes import OnnxPredict, OrtRunner, predict_example, running  # noqa: E402
from lightning_fer.quantize import MIN_AGREEMENT, label_agreement, quantize  # noqa: E402

WITH_INT8 = [n for n, e in shipped.registry().items() if e.get("int8")]
pytestmark = pytest.mark.skipif(not WITH_INT8, reason="no shipped int8 versions (python -m benchmarks.ship_int8)")
#: the stated tolerance on real faces: labels agree on at least 95% (the predict-time check), and
#: no class probability differs by more than 0.25
MAX_PROB_DIFF = 0.25


def _public_test_faces(root: Path, views: bool, n: int = 256) -> torch.Tensor:
    from lightning_fer.build import build
    from lightning_fer.data.transforms import normalize_batch

    repo = Path(__file__).resolve().parents[2]
    dm = build(repo / "configs/fer2013/quick_member.yaml", [f"--data.init_args.root={root}"],
               {"data": {"init_args": {"loader": {"batch_size": n}}}}).datamodule
    dm.prepare_data()
    dm.setup("fit")
    batch = normalize_batch(next(iter(dm.loader("test", distributed=False))))
    return batch["views"] if views else batch["views"][:, 0]


@pytest.mark.parametrize("name", WITH_INT8)
def test_int8_agrees_with_float32_on_real_faces(name, fer2013_root, tmp_path):
    module = lightning_fer.pretrained(name)
    data = shipped.load_bundle(name)["data"]
    example = predict_example(module, data.get("image_size"), data.get("channels"), 2)
    rt = OnnxPredict("onnx", tmp_path)
    float32, path = rt._session(module, example)
    found = shipped.int8_for(path.stem)  # the export predict makes names the shipped int8 version
    assert found is not None and found[1]["ok"], f"{name}: no checked int8 version for {path.stem}"
    int8 = rt.int8_session(path, required=True)
    x = _public_test_faces(fer2013_root, views=example.dim() == 5).numpy()
    a = float32.run(None, {"input": x})[0]
    b = int8.run(None, {"input": x})[0]
    pa, pb = torch.from_numpy(a).softmax(-1), torch.from_numpy(b).softmax(-1)
    assert label_agreement(b, a) >= MIN_AGREEMENT
    assert float((pa - pb).abs().max()) <= MAX_PROB_DIFF


def _astronaut(tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(path), skdata.astronaut()[:, :, ::-1])
    return path


def _predict(tmp_path: Path, runtime: str) -> list[dict]:
    out = tmp_path / f"{runtime}.csv"
    main(["predict", "--pretrained", "fer2013", "--data.predict.path", str(_astronaut(tmp_path)),
          "--data.predict.output", str(out), "--data.predict.runtime", runtime, "--trainer.enable_progress_bar=false"])
    return list(csv.DictReader(out.open()))


@pytest.mark.skipif("fer2013" not in WITH_INT8, reason="fer2013 has no shipped int8 version")
def test_int8_runtime_labels_the_astronaut_happy_after_its_check(isolated, caplog):
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        rows = _predict(isolated, "int8")
    assert [r["label"] for r in rows] == ["happy"]
    assert "int8 agrees with float32 on 100.0% of the first 2 faces" in caplog.text  # the face and its mirror


def _failing_check(copy: Path, monkeypatch, kind: str) -> None:
    """The shipped models, copied to ``copy`` and used from there, with fer2013's ``kind`` (int8 or
    bf16) record made to lose 1 point against float32 on PublicTest."""
    shutil.copytree(shipped.SHIPPED, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    reg = json.loads((copy / "models.json").read_text())
    entry = reg["models"]["fer2013"][kind]
    entry[f"{kind}_acc"] = entry["float32_acc"] - 1.0
    (copy / "models.json").write_text(json.dumps(reg))
    monkeypatch.setattr(shipped, "SHIPPED", copy)
    monkeypatch.setattr(shipped, "REGISTRY", copy / "models.json")


@pytest.mark.skipif("fer2013" not in WITH_INT8, reason="fer2013 has no shipped int8 version")
def test_auto_refuses_an_int8_version_that_failed_its_accuracy_check(isolated, monkeypatch, caplog):
    _failing_check(isolated / "shipped", monkeypatch, "int8")
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        rows = _predict(isolated, "auto")
    assert [r["label"] for r in rows] == ["happy"]
    assert "int8 not considered" in caplog.text and "-1.00 points lost" not in caplog.text
    assert "(+1.00 points lost; at most 0.3 allowed)" in caplog.text
    assert "predict: ONNX Runtime int8" not in caplog.text


def test_an_int8_model_that_disagrees_on_the_first_faces_falls_back_to_float32(tmp_path, caplog):
    """The predict-time check, on a real int8 session that is wrong on purpose: the int8 version of
    another network (random weights) in place of the shipped one's."""
    from lightning_fer import FERClassifier
    from lightning_fer.export import export

    shipped_model = lightning_fer.pretrained(WITH_INT8[0])
    x = predict_example(shipped_model, 48, 1, 64)
    rt = OnnxPredict("int8", tmp_path)
    float32, _ = rt._session(shipped_model, x[:2])
    torch.manual_seed(1)
    other = FERClassifier("fer_vgg", backbone_args={"widths": [8, 16]}, image_size=48, in_channels=1).eval()
    export(other, tmp_path / "other.onnx", "onnx", x[:2])
    quantize(tmp_path / "other.onnx", tmp_path / "other.int8.onnx", x.numpy())
    import onnxruntime as ort

    runner = OrtRunner(ort.InferenceSession(str(tmp_path / "other.int8.onnx"), providers=["CPUExecutionProvider"]),
                       check=float32, name="int8")
    with caplog.at_level(logging.WARNING, logger="lightning_fer"):
        out = runner(x)
    assert "float32 ONNX Runtime for the rest of this run" in caplog.text
    assert runner.session is float32 and runner.check is None and runner.name == "onnx"
    assert np.allclose(out.numpy(), float32.run(None, {"input": x.numpy()})[0])


def test_the_runtime_is_an_object_the_module_calls_and_forward_is_never_replaced(tmp_path):
    """Issue 35: predict runs the network through ``predict_runtime`` for the run, then the module is
    as it was; its ``forward`` is the class's all along."""
    model = lightning_fer.pretrained(WITH_INT8[0])
    choice = OnnxPredict("int8", tmp_path)
    assert choice.attach(model, 48, 1) == "int8" and isinstance(choice.runner, OrtRunner)
    assert "forward" not in vars(model) and model.predict_runtime is None
    x = predict_example(model, 48, 1, 8)
    batch = {"views": x[:, None], "index": torch.arange(8), "label": torch.full((8,), -1)}
    with torch.no_grad():
        eager = model.predict_step(batch, 0)["probs"]
        with running(model, choice.runner):
            assert model.predict_runtime is choice.runner and "forward" not in vars(model)
            onnx = model.predict_step(batch, 0)["probs"]
    assert model.predict_runtime is None
    assert (onnx.argmax(1) == eager.argmax(1)).float().mean() >= MIN_AGREEMENT


def test_int8_for_a_model_that_was_not_shipped_is_refused_in_one_line(tmp_path):
    from lightning_fer.options import OptionError

    with pytest.raises(OptionError, match="--data.predict.runtime int8: no int8 version was shipped and checked"):
        OnnxPredict("int8", tmp_path).int8_session(tmp_path / "ferclassifier-0000000000000000.onnx", required=True)


@pytest.mark.skipif("fer2013" not in WITH_INT8, reason="fer2013 has no shipped int8 version")
def test_analyze_runs_the_int8_version_with_the_labels_of_float32(fer2013_root):
    from PIL import Image

    crops = [np.asarray(Image.open(f).convert("L")) for f in sorted((fer2013_root / "val" / "happy").iterdir())[:32]]
    eager = lightning_fer.Predictor("fer2013", face_box="image")
    int8 = lightning_fer.Predictor("fer2013", face_box="image", runtime="int8")
    assert int8.runtime == "int8" and eager.runtime == "eager"
    a = [f[0]["label"] for f in eager.analyze(crops)]
    b = [f[0]["label"] for f in int8.analyze(crops)]
    assert sum(x == y for x, y in zip(a, b)) >= MIN_AGREEMENT * len(a), (a, b)


#: bf16's stated tolerance on real faces: labels as float32's on at least 97%, no class
#: probability more than 0.1 apart (bf16 keeps 8 bits of mantissa; measured with fer2013 on these 256
#: PublicTest crops, 2-core AMD EPYC, emulated bf16: labels 100%, largest difference 0.010)
BF16_AGREEMENT, BF16_PROB_DIFF = 0.97, 0.1


@pytest.mark.parametrize("name", ["fer2013"])
def test_bf16_agrees_with_float32_on_real_faces(name, fer2013_root):
    """bf16 autocast (``fast_path="on"``: what ``auto`` picks on a CPU with amx_bf16/avx512_bf16 and
    on GPUs) gives float32's labels on real faces. A CPU without the units emulates it: slower,
    the same arithmetic."""
    files = sorted(str(f) for f in (fer2013_root / "val").glob("*/*"))[::14][:256]
    f32 = lightning_fer.Predictor(name, face_box="image", fast_path="off")
    bf16 = lightning_fer.Predictor(name, face_box="image", fast_path="on")
    assert bf16.fast_path.autocast_dtype == torch.bfloat16 and f32.fast_path.autocast_dtype is None
    p = np.array([[f[0]["probabilities"][c] for c in f32.class_names] for f in f32.analyze(files)])
    q = np.array([[f[0]["probabilities"][c] for c in f32.class_names] for f in bf16.analyze(files)])
    agree, diff = label_agreement(p, q), float(np.abs(p - q).max())
    assert agree >= BF16_AGREEMENT and diff <= BF16_PROB_DIFF, f"{len(files)} faces: labels agree on {agree:.1%}, max diff {diff:.3f}"


def test_auto_runs_a_shipped_model_in_bf16_only_where_its_ship_time_check_passed(isolated, monkeypatch, caplog):
    """On a CPU with bf16 units (flags given through $LIGHTNING_FER_CPU_FLAGS) ``fast_path: auto``
    takes bf16 for a shipped model whose ``bf16`` record passed, and float32, said in a log line,
    for one whose record lost more than 0.3 points: from Python and on the command line."""
    from lightning_fer.cli import main as cli_main
    from lightning_fer.fastpath import FLAGS_ENV

    assert shipped.registry()["fer2013"].get("bf16"), "no bf16 record: python -m benchmarks.ship_int8 --kinds bf16"
    monkeypatch.setenv(FLAGS_ENV, "avx2 avx512f avx512_bf16 amx_bf16")
    argv = ["predict", "--pretrained", "fer2013", "--data.predict.path", str(isolated), "--trainer.enable_progress_bar=false"]

    def precision(args) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lightning_fer"):
            cli_main(args)
        return caplog.text.split("fast path (", 1)[1].split("precision ", 1)[1].split(",")[0]

    assert lightning_fer.Predictor("fer2013", face_box="image").fast_path.autocast_dtype == torch.bfloat16
    assert precision(argv) == "bf16-mixed"
    _failing_check(isolated / "shipped", monkeypatch, "bf16")
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        p = lightning_fer.Predictor("fer2013", face_box="image")
    assert p.fast_path.autocast_dtype is None
    assert "bf16 not considered" in caplog.text and "(+1.00 points lost; at most 0.3 allowed)" in caplog.text
    assert precision(argv) == "32-true" and "--pretrained fer2013: bf16 not considered" in caplog.text
    assert precision([*argv, "--fast_path=on"]) == "bf16-mixed"  # the user's word wins
