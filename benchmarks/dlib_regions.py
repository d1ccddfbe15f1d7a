"""The paper's landmarks against the library's: FER2013 regions from MTCNN's 5 points and from
Dlib's 68 (``landmarks: dlib``, on the whole 48 px crop), side by side.

    python -m benchmarks.dlib_regions --out /tmp/dlib_regions [--root ../shared/data/fer2013] [--epochs 12]

For each landmark source: the share of FER2013 faces (Training and PublicTest, duplicates dropped)
whose parts are located, the time of the landmark pass, and a mouth expert (the quick VGG recipe
of ``configs/fer2013/quick_member.yaml`` on 32 px mouth views) trained on all of Training and
tested on PublicTest (where its mouth is located). Resumable: a finished expert is kept.
Writes ``benchmarks/results/dlib_regions.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table  # noqa: E402

#: landmark source -> the data overrides that choose it
SOURCES = {
    "MTCNN (5 points; the template where it finds no face, parts then missing)": ["--data.init_args.landmarks=auto"],
    "Dlib (68 points on the whole crop)": ["--data.init_args.landmarks=dlib"],
}


def index(root: str, cache: Path, overrides: list[str]) -> dict:
    """The landmark pass of one source: seconds, and the share of faces with located parts."""
    from lightning_fer.build import build

    dm = build(REPO / "configs/fer2013/quick_member.yaml", [f"--data.init_args.root={root}",
                                                          f"--data.init_args.records.cache_dir={cache}", *overrides]).datamodule
    t0 = time.perf_counter()
    dm.prepare_data()
    seconds = time.perf_counter() - t0
    rep = dm.index_report
    usable = rep.total - rep.bad
    return {"seconds": seconds, "computed": rep.computed, "located": rep.located, "usable": usable,
            "kinds": dict(rep.kinds)}


def train(folder: Path, root: str, cache: Path, overrides: list[str], epochs: int) -> dict:
    """A mouth expert on all of Training; PublicTest figures from its test after fit."""
    done = folder / "done.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lightning_fer", "fit", "--config", str(REPO / "configs/fer2013/quick_member.yaml"),
           f"--data.init_args.root={root}", f"--data.init_args.records.cache_dir={cache}", "--data.init_args.views=[mouth]",
           "--data.init_args.image_size=32", f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
           "--trainer.default_root_dir=run", *overrides]
    t0 = time.time()
    with open(folder / "fit.log", "w") as log:
        rc = subprocess.call(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    if rc:
        raise SystemExit(f"training failed (rc {rc}): see {folder / 'fit.log'}")
    metrics = {}
    for f in sorted(folder.glob("run/logs/**/metrics.csv")):
        for r in csv.DictReader(open(f)):
            metrics.update({k: float(v) for k, v in r.items() if v not in ("", None) and k.startswith("test/")})
    info = {"wall_s": round(time.time() - t0), "acc": metrics.get("test/acc"), "f1": metrics.get("test/f1")}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(done)
    return info


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "fer2013"))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--results", default=str(HERE / "results" / "dlib_regions.md"))
    args = ap.parse_args(argv)
    root = str(Path(args.root).resolve())
    rows = []
    t0 = time.time()
    for i, (name, overrides) in enumerate(SOURCES.items()):
        cache = args.out / f"cache{i}"
        ix = index(root, cache, overrides)
        expert = train(args.out / f"mouth{i}", root, cache, overrides, args.epochs)
        rows.append([name, f"{100 * ix['located'] / ix['usable']:.1f}% ({ix['located']:,} of {ix['usable']:,})",
                     f"{ix['seconds']:.0f} s" + ("" if ix["computed"] else " (cached)"),
                     f"{100 * expert['acc']:.1f}", f"{100 * expert['f1']:.1f}", f"{expert['wall_s'] / 60:.1f}"])
    md = "\n".join([
        "# FER2013 regions: MTCNN's landmarks against Dlib's",
        "",
        f"Written by `python -m benchmarks.dlib_regions --out <out> --epochs {args.epochs}` on "
        f"{machine()}, in {(time.time() - t0) / 60:.0f} min.",
        "",
        "Faces: FER2013 Training and PublicTest with duplicates dropped. Mouth expert: `configs/fer2013/quick_member.yaml`"
        f" (VGG 24-192) on 32 px mouth views, {args.epochs} epochs on all of Training, tested on PublicTest where its mouth is"
        " located (accuracy and macro F1 over those faces).",
        "",
        table(["landmarks", "faces with located parts", "landmark pass", "mouth expert acc. (%)", "macro F1 (%)",
               "expert training (min)"], rows),
        "",
    ])
    Path(args.results).write_text(md)
    print(md)
    return md


if __name__ == "__main__":
    main()
