import logging, pytest, torch
from lightning_fer import FERClassifier
from lightning_fer.options import OptionError
from lightning_fer.predict.runtimes import OnnxPredict

def test_a_model_onnx_cannot_export_runs_eager_under_auto_and_is_refused_in_one_line_under_onnx(tmp_path, caplog):
    """SPP-net at 48 px pools 3x3 maps to 4x4 (adaptive max pooling to an uneven size, which the
    ONNX exporter cannot write): ``auto`` says so and runs eager; ``onnx`` refuses in one line."""
    torch.manual_seed(0)
    model = FERClassifier("sppnet", image_size=48).eval()
    with caplog.at_level(logging.INFO, logger="lightning_fer"):
        chosen = OnnxPredict("auto", tmp_path / "onnx").attach(model, 48, 3)
    assert chosen == "eager" and "does not export to ONNX" in caplog.text and "adaptive_max_pool2d" in caplog.text
    assert not model.training
    with pytest.raises(OptionError, match=r"^--data.predict.runtime onnx: this model does not export to ONNX .*use auto or eager$"):
        OnnxPredict("onnx", tmp_path / "onnx").attach(model, 48, 3)
    assert not list((tmp_path / "onnx").glob("*.onnx"))  # nothing half-written left behind
