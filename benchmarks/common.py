"""Shared helpers: the machine header, Markdown tables, timing, and faces/s through ``analyze``."""

from __future__ import annotations

import datetime
import os
import platform
import time


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{datetime.date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, {gpu}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}"
    )


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    import statistics

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def publictest_crops(root, n: int) -> list[str]:
    """The first ``n`` FER2013 PublicTest crops (files, sorted) under ``root/val``."""
    from pathlib import Path

    return sorted(str(f) for f in (Path(root) / "val").glob("*/*"))[:n]


def analyze_faces_per_s(name: str, files: list[str], runtime: str = "auto") -> tuple[float, str]:
    """Faces/s of one ``lightning_fer.Predictor(name, face_box="image", runtime=runtime).analyze(files)``
    call (reading, the transform, the model) after a warm-up on 64 of them, on the threads the caller
    set; and the runtime the predictor ran."""
    import lightning_fer

    predictor = lightning_fer.Predictor(name, face_box="image", runtime=runtime)
    predictor.analyze(files[:64])  # warm-up: the runtime's choice and its session
    t0 = time.perf_counter()
    predictor.analyze(files)
    return len(files) / (time.perf_counter() - t0), predictor.runtime
