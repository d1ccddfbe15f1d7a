"""Ship int8 versions of the shipped models, and check them and bf16, each against float32 (issue 36).

    python -m benchmarks.ship_int8                    # every shipped model, int8 and bf16
    python -m benchmarks.ship_int8 --names fer2013 --kinds bf16

bf16: the model's own ``predict_step`` on all of PublicTest under bf16 autocast against float32,
recorded as ``bf16`` in ``models.json``; ``fast_path: auto`` (a GPU, a CPU with bf16 units) runs a
shipped model in bf16 only where it lost at most ``quantize.MAX_LOSS`` points.

For each shipped model: export it as predict does (float32 ONNX), quantise it with ONNX Runtime
(static, weights per output channel, :func:`lightning_fer.quantize.quantize`) calibrated on the
first ``--calibration`` FER2013 Training faces (no augmentation), score float32 and int8 on all of
PublicTest (duplicates dropped; a member's flip TTA as predict applies it), and record the int8 file
beside the bundle in ``lightning_fer/shipped/models.json`` (``int8``: file, SHA-256, the export's key,
both accuracies, label agreement, and whether it passed: at most ``quantize.MAX_LOSS`` points lost).
``--data.predict.runtime auto`` uses it only where it passed. Run it again after ``benchmarks.ship``
(which rewrites the registry entries it writes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine
from lightning_fer import shipped

REPO = Path(__file__).resolve().parent.parent


def faces(dm, split: str, n: int | None, views: bool):
    """Normalised inputs of ``split`` as the exported graph takes them, and their labels."""
    from lightning_fer.data.transforms import normalize_batch

    xs, ys, got = [], [], 0
    for batch in dm.loader(split, distributed=False):
        batch = normalize_batch(batch)
        xs.append(batch["views"] if views else batch["views"][:, 0])
        ys.append(batch["label"])
        got += len(ys[-1])
        if n is not None and got >= n:
            break
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def scores(session, x: torch.Tensor, flip: bool) -> np.ndarray:
    """Class probabilities as predict gives them: a member's flip TTA is the library's flip rule."""
    from lightning_fer.models.evaluation import flip_average

    run = lambda t: torch.from_numpy(session.run(None, {"input": t.contiguous().numpy()})[0])  # noqa: E731
    out = flip_average(run(x), run(x.flip(-1))).softmax(-1) if flip else run(x)
    return out.numpy()


def ship_int8(name: str, root: str, calibration: int) -> dict:
    import onnxruntime as ort

    from lightning_fer import zoo
    from lightning_fer.build import build
    from lightning_fer.ensemble.module import EnsembleModule
    from lightning_fer.predict.runtimes import OnnxPredict, predict_example
    from lightning_fer.quantize import label_agreement, passes, quantize

    module = zoo.pretrained(name)
    data = zoo.load_bundle(name)["data"]
    views = isinstance(module, EnsembleModule)
    flip = not views and module.hparams.get("tta") == "flip"
    dm = build(REPO / "configs/fer2013/quick_member.yaml", [f"--data.init_args.root={root}"],
               {"data": {"init_args": {"loader": {"batch_size": 256}, "training": {"augment": False}}}}).datamodule
    dm.prepare_data()
    dm.setup("fit")
    example = predict_example(module, data.get("image_size"), data.get("channels"), 2)
    with tempfile.TemporaryDirectory() as tmp:
        float32, path = OnnxPredict("onnx", tmp)._session(module, example)
        calib, _ = faces(dm, "train", calibration, views)
        out = shipped.SHIPPED / f"{name}.int8.onnx"
        t0 = time.perf_counter()
        quantize(path, out, calib.numpy())
        seconds = time.perf_counter() - t0
        key = path.stem
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    int8 = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
    x, y = faces(dm, "test", None, views)
    p32 = np.concatenate([scores(float32, x[i:i + 256], flip) for i in range(0, len(x), 256)])
    p8 = np.concatenate([scores(int8, x[i:i + 256], flip) for i in range(0, len(x), 256)])
    acc = lambda p: round(100 * float((p.argmax(1) == y.numpy()).mean()), 2)  # noqa: E731
    entry = {"file": out.name, "sha256": shipped.sha256(out), "bytes": out.stat().st_size, "key": key,
             "float32_acc": acc(p32), "int8_acc": acc(p8), "agreement": round(100 * label_agreement(p8, p32), 2),
             "max_prob_diff": round(float(np.abs(p8 - p32).max()), 4), "faces": int(len(y)),
             "split": "FER2013 PublicTest, duplicates dropped",
             "calibration": f"the first {len(calib)} FER2013 Training faces (no augmentation)",
             "quantised_in_s": round(seconds, 1), "measured_on": machine()}
    entry["ok"], entry["check"] = passes(entry)
    return entry


def ship_bf16(name: str, root: str) -> dict:
    """The bf16 check of a shipped model: its own ``predict_step`` on all of PublicTest under bf16
    autocast against float32 (on a CPU without bf16 units the arithmetic is emulated: slower, the
    same rounding). ``fast_path: auto`` runs the model in bf16 only where this passed."""
    from lightning_fer import zoo
    from lightning_fer.build import build
    from lightning_fer.ensemble.module import EnsembleModule
    from lightning_fer.fastpath import cpu_has_bf16_units
    from lightning_fer.quantize import label_agreement, passes

    module = zoo.pretrained(name)
    views = isinstance(module, EnsembleModule)
    dm = build(REPO / "configs/fer2013/quick_member.yaml", [f"--data.init_args.root={root}"],
               {"data": {"init_args": {"loader": {"batch_size": 256}, "training": {"augment": False}}}}).datamodule
    dm.prepare_data()
    dm.setup("fit")
    x, y = faces(dm, "test", None, views)
    x = x if views else x[:, None]

    def probs(bf16: bool) -> np.ndarray:
        out = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(x), 256):
                b = {"views": x[i:i + 256], "index": torch.arange(i, min(i + 256, len(x))), "label": y[i:i + 256]}
                out.append(module.predict_step(b, 0)["probs"].float().numpy())
        return np.concatenate(out)

    t0 = time.perf_counter()
    p32, p16 = probs(False), probs(True)
    acc = lambda p: round(100 * float((p.argmax(1) == y.numpy()).mean()), 2)  # noqa: E731
    entry = {"float32_acc": acc(p32), "bf16_acc": acc(p16), "agreement": round(100 * label_agreement(p16, p32), 2),
             "max_prob_diff": round(float(np.abs(p16 - p32).max()), 4), "faces": int(len(y)),
             "split": "FER2013 PublicTest, duplicates dropped", "autocast": "torch.autocast(bfloat16)",
             "emulated": not cpu_has_bf16_units(), "seconds": round(time.perf_counter() - t0, 1),
             "measured_on": machine()}
    entry["ok"], entry["check"] = passes(entry, "bf16")
    return entry


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", nargs="+", default=None, help="shipped models (default: all)")
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "fer2013"))
    ap.add_argument("--calibration", type=int, default=256, help="Training faces that calibrate the ranges")
    ap.add_argument("--kinds", nargs="+", choices=["int8", "bf16"], default=["int8", "bf16"],
                    help="what to check (and for int8, write)")
    args = ap.parse_args(argv)
    from lightning_fer.files import write_text

    done = {}
    for name in args.names or shipped.names():
        for kind in args.kinds:
            e = ship_int8(name, args.root, args.calibration) if kind == "int8" else ship_bf16(name, args.root)
            done[(name, kind)] = e
            reg = json.loads(shipped.REGISTRY.read_text())
            reg["models"][name][kind] = e
            write_text(shipped.REGISTRY, json.dumps(reg, indent=1) + "\n")
            size = f", {e['bytes'] / 1e6:.1f} MB" if "bytes" in e else ""
            print(f"{name}: {kind} {e[f'{kind}_acc']}% vs float32 {e['float32_acc']}% on {e['faces']} PublicTest faces, "
                  f"labels agree on {e['agreement']}%{size}: {'passed' if e['ok'] else 'failed'}", flush=True)
    return done


if __name__ == "__main__":
    main()
