"""The data layer at AffectNet's scale: start-up, memory, the cache and the loader, against N.

    python -m benchmarks.scale [--sizes 20000 60000 150000] [--work DIR] [--before DIR] [--out FILE]

It writes a synthetic tree in AffectNet's exact layout (``lightning_fer.data.synthetic.affectnet_layout``:
96 px JPEGs with distinct bytes, the face box and 68 landmarks per row, both CSVs) of each size,
and measures, each step in a fresh process:

- ``prepare_data`` cold (no cache; annotated landmarks, so decode-bound) against decoding alone
  (``load_image_checked`` on the same files by the same number of threads): the ratio;
- ``prepare_data`` + ``setup`` warm (the cache there), with the face only and with all six views;
- the main process's memory after ``setup`` (six views), less before: RSS and its anonymous part
  (what is private to the process; a memory-mapped cache's pages are the page cache, shared);
- per-worker private memory over a full epoch's indices: a process forked after ``setup`` (as a
  loader worker is) reads every training item's path, landmarks, box, mask and label as
  ``__getitem__`` does, without decoding; its ``Private_Dirty`` growth is what copy-on-write
  copied;
- the cache folder's size;
- loader images/s: 2 workers, batches of 64, six views at 64 px, over 4,096 training items.

``--before DIR`` runs the same steps against another checkout (``git archive <commit> | tar -x
-C DIR``) on the same trees: the before/after table of ``benchmarks/README.md``. Sizes beyond
the largest are extrapolated by a straight line through the measured ones (every cost here is
linear in N).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

SIX = ["face", "left_eye", "right_eye", "nose", "mouth", "rest"]


# -- the child: one step, in a fresh process, against whichever lightning_fer is on PYTHONPATH ----
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "RssAnon", "RssFile")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out


def _private_dirty(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty"):
                return int(line.split()[1]) * 1024
    return 0


def _dm(root: str, cache: str, views: list[str]):
    from lightning_fer.data.datamodule import FERDataModule

    return FERDataModule("affectnet", root=root, views=views, image_size=64, records={"cache_dir": cache},
                         loader={"batch_size": 64, "num_workers": 2})


def child(step: str, root: str, cache: str) -> dict:
    import logging

    logging.disable(logging.WARNING)
    # Imported before the baseline: the libraries are not the data's memory.
    import albumentations  # noqa: F401
    import cv2  # noqa: F401
    import lightning  # noqa: F401
    import numpy as np
    import sklearn.model_selection  # noqa: F401
    import sklearn.utils  # noqa: F401
    import torch  # noqa: F401

    from lightning_fer.data.datamodule import FERDataModule  # noqa: F401

    if step == "decode":
        from concurrent.futures import ThreadPoolExecutor

        from lightning_fer.data.io import load_image_checked

        images = Path(root) / "Manually_Annotated_Images"
        files = sorted(str(p) for p in images.rglob("*.jpg"))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:  # as prepare_data decodes: a task per thread and chunk of 256
            for s in range(0, len(files), 256):
                chunk = files[s : s + 256]
                list(pool.map(lambda part: [load_image_checked(f) for f in part], [chunk[:128], chunk[128:]]))
        return {"seconds": time.perf_counter() - t0, "images": len(files)}
    if step == "cold":
        shutil.rmtree(cache, ignore_errors=True)
        dm = _dm(root, cache, ["face"])
        t0 = time.perf_counter()
        dm.prepare_data()
        return {"seconds": time.perf_counter() - t0,
                "cache_bytes": sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file())}
    views = SIX if step in ("warm6", "memory", "loader") else ["face"]
    before = _status()
    t0 = time.perf_counter()
    dm = _dm(root, cache, views)
    dm.prepare_data()
    dm.setup("fit")
    seconds = time.perf_counter() - t0
    after = _status()
    out = {"seconds": seconds, "rss": after["VmRSS"] - before["VmRSS"], "anon": after["RssAnon"] - before["RssAnon"]}
    if step == "memory":
        ds = dm.datasets["train"]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a loader worker: forked after setup, touching every item's metadata
            os.close(r)
            p0 = _private_dirty()
            for i in range(len(ds)):
                _ = ds.paths[i], ds.points[i], ds.boxes[i], ds.view_mask[i], int(ds.labels[i]), int(ds.indices[i])
            os.write(w, json.dumps({"worker_private": _private_dirty() - p0, "items": len(ds)}).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.waitpid(pid, 0)
        out.update(json.loads(data))
    if step == "loader":
        from torch.utils.data import DataLoader, Subset

        ds = dm.datasets["train"]
        sub = Subset(ds, np.arange(min(4096, len(ds))))
        loader = DataLoader(sub, batch_size=64, num_workers=2)
        it = iter(loader)
        next(it)
        t0 = time.perf_counter()
        n = sum(len(b["label"]) for b in it)
        out["images_per_s"] = n / (time.perf_counter() - t0)
    return out


# -- the driver -------------------------------------------------------------------------------
def run_child(code: Path, step: str, root: Path, cache: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), NO_ALBUMENTATIONS_UPDATE="1")
    # Python puts the script's folder first on sys.path; the child must import ``code``'s lightning_fer.
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", step, str(root), str(cache)],
                          env=env, capture_output=True, text=True, cwd=str(code))
    if proc.returncode != 0:
        raise RuntimeError(f"step {step} on {root} with {code} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(code: Path, root: Path, cache: Path) -> dict:
    m = {"decode": run_child(code, "decode", root, cache), "cold": run_child(code, "cold", root, cache)}
    for step in ("warm1", "warm6", "memory", "loader"):
        m[step] = run_child(code, step, root, cache)
    return m


def fit(xs: list[int], ys: list[float], at: int) -> float:
    import numpy as np

    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(slope * at + intercept)


def rows_of(results: dict[int, dict]) -> dict[str, dict]:
    """Per figure: the measured value at each size and the extrapolations."""
    sizes = sorted(results)
    figures = {
        "warm start, face only (s)": lambda m, n: m["warm1"]["seconds"],
        "warm start, six views (s)": lambda m, n: m["warm6"]["seconds"],
        "cold prepare_data (s)": lambda m, n: m["cold"]["seconds"],
        "cold / decode-only rate": lambda m, n: m["decode"]["seconds"] / m["cold"]["seconds"],
        "main RSS (KiB/record)": lambda m, n: m["memory"]["rss"] / 1024 / n,
        "main anonymous (KiB/record)": lambda m, n: m["memory"]["anon"] / 1024 / n,
        "worker private over an epoch (MiB)": lambda m, n: m["memory"]["worker_private"] / 2**20,
        "cache (MB)": lambda m, n: m["cold"]["cache_bytes"] / 1e6,
        "loader images/s": lambda m, n: m["loader"]["images_per_s"],
    }
    out = {}
    for name, f in figures.items():
        ys = [f(results[n], n) for n in sizes]
        linear = not name.startswith(("cold /", "main", "loader"))
        out[name] = {"values": ys, "290k": fit(sizes, ys, 290_000) if linear else ys[-1],
                     "1M": fit(sizes, ys, 1_000_000) if linear else ys[-1]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 60_000, 150_000])
    ap.add_argument("--work", default="/tmp/lightning_fer_scale")
    ap.add_argument("--before", default=None, help="another checkout to measure on the same trees")
    ap.add_argument("--out", default=str(HERE / "benchmarks" / "results" / "scale.md"))
    ap.add_argument("--reuse", nargs="*", default=[], metavar="NAME",
                    help="take these runs (before, after) from an earlier --work DIR/scale.json instead of measuring")
    ap.add_argument("--child", nargs=3, metavar=("STEP", "ROOT", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # lightning_fer from PYTHONPATH (this checkout or --before's)
        print(json.dumps(child(*args.child)))
        return
    from benchmarks.common import machine, table
    from lightning_fer.data.synthetic import affectnet_layout

    work = Path(args.work)
    codes = {"after": HERE} | ({"before": Path(args.before).resolve()} if args.before else {})
    results: dict[str, dict[int, dict]] = {k: {} for k in codes}
    earlier = json.loads((work / "scale.json").read_text()) if args.reuse and (work / "scale.json").is_file() else {}
    for n in args.sizes:
        root = work / f"affectnet-{n}"
        if not (root / "Manually_Annotated_file_lists" / "validation.csv").is_file():
            shutil.rmtree(root, ignore_errors=True)
            made = affectnet_layout(root, n)
            print(f"wrote {n} images in {made['seconds']:.0f} s", flush=True)
        for name, code in codes.items():
            if name in args.reuse and str(n) in earlier.get(name, {}):
                results[name][n] = earlier[name][str(n)]
                continue
            results[name][n] = measure(code, root, work / f"cache-{name}-{n}")
            print(name, n, json.dumps(results[name][n]), flush=True)
    (work / "scale.json").write_text(json.dumps({k: {str(n): v for n, v in r.items()} for k, r in results.items()}))
    sizes = args.sizes
    lines = ["# Data layer at scale (`python -m benchmarks.scale`)", "", f"Machine: {machine()}", "",
             "Synthetic AffectNet layout, 96 px JPEGs, 68 landmarks per row; `FERDataModule(source=\"affectnet\")`, "
             "fold 0 of 5, 2 workers. 290k and 1M: a straight line through the measured sizes for the times and "
             "sizes; per-record memory, rates and ratios as measured at the largest size.", ""]
    headers = ["figure"] + [f"{n / 1000:g}k" for n in sizes] + ["290k", "1M"]
    body = []
    tables = {name: rows_of(r) for name, r in results.items()}
    for fig in tables["after"]:
        for name in codes:
            t = tables[name][fig]
            body.append([f"{fig}, {name}"] + [round(v, 3) for v in t["values"]] + [round(t["290k"], 3), round(t["1M"], 3)])
        if "before" in tables:
            b, a = tables["before"][fig], tables["after"][fig]
            body.append([f"{fig}, after / before"] + [round(x / y, 3) if y else "-" for x, y in zip(a["values"], b["values"])]
                        + [round(a["290k"] / b["290k"], 3) if b["290k"] else "-", round(a["1M"] / b["1M"], 3) if b["1M"] else "-"])
    lines.append(table(headers, body))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
