"""Write the shipped models (``lightning_fer/shipped/``) from trained checkpoints (the bundles: member
checkpoints without optimiser or loop state, float16 weights, an ensemble's strategy and learnt
state), measure them as shipped, and record them in ``lightning_fer/shipped/models.json``: the command that reproduces them.

    python -m benchmarks.ship --member runs/fer2013/best_member/checkpoints/final.final_weights.ckpt \\
        --ensemble-run runs/fer2013/cv --ensemble-members quick_member quick_member.bag1 quick_member.bag2 xception_member \\
        --strategy lightning_fer.ensemble.SoftVote

1. ``fer2013``: the ``--member`` checkpoint (trained by ``configs/fer2013/best_member.yaml``).
2. ``fer2013-fast``: the ``--fast`` checkpoint (``python -m benchmarks.fast``: ``configs/fer2013/fast_member.yaml``).
3. ``fer2013-ensemble``: the ``--ensemble-members`` of a ``cv`` run (seed ``--seed``, fold 0
   held out), combined by ``--strategy``; a strategy that learns is fitted on fold 0 (the
   members' held-out fold, checked by the library's leak check), as ``cv`` fits it.

Only the models named are rewritten; the others stay as they are in ``models.json``.
Each bundle holds float16 weights; each is then loaded by name (hash checked, ``weights_only``)
and tested on FER2013 PublicTest with duplicates dropped, and those figures go in the registry.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import analyze_faces_per_s, machine, publictest_crops  # noqa: E402
from lightning_fer import shipped  # noqa: E402

LICENCE = ("FER2013 (Kaggle ICML 2013 challenge) is for research; these weights learnt from it inherit that: "
           "research and evaluation use")
#: what the materialized config's data section holds: the members' geometry, FER2013's layout
DATA = {"source": "folder", "root": "../shared/data/fer2013", "image_size": 48, "channels": 1, "landmarks": "template",
        "folds": {"fold": None}, "records": {"split_map": {"val": "test"}, "duplicates": "drop"}, "loader": {"num_workers": 2}}


def stripped(ckpt_path: str | os.PathLike, half: bool = True) -> dict:
    """A member checkpoint in the current format (older ones migrated by loading them), without
    optimiser, loop or callback state; float weights in float16 where ``half``."""
    import lightning

    from lightning_fer.checkpoints import UnsafeCheckpointError, unsafe_message
    from lightning_fer.models.classifier import FERClassifier

    try:
        model = FERClassifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - named below
        import pickle

        if isinstance(err, pickle.UnpicklingError):
            raise UnsafeCheckpointError(unsafe_message(ckpt_path, err)) from None
        raise
    out = {"state_dict": {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()},
           # the class path too: LightningCLI reads a --ckpt_path's hyperparameters as config
           "hyper_parameters": {"_class_path": "lightning_fer.FERClassifier",
                                "_instantiator": "lightning.pytorch.cli.instantiate_module",
                                **{k: v for k, v in dict(model.hparams).items() if not k.startswith("_")}},
           "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(out)  # the classes, region, backbone and data fingerprint
    return out


def member_bundle(ckpt_path: str | os.PathLike, data: dict, half: bool = True) -> dict:
    return {"format": shipped.FORMAT, "kind": "member", "checkpoint": stripped(ckpt_path, half), "data": dict(data)}


def ensemble_bundle(member_paths: list, strategy, views: list[str], flip: bool, data: dict, half: bool = True) -> dict:
    """An ensemble's bundle: its members' stripped checkpoints, the strategy's spec and learnt
    state (``strategy``: a fitted :class:`~lightning_fer.ensemble.strategy.EnsembleStrategy`)."""
    state = {f"ensemble.strategy.{k}": v for k, v in strategy.state_dict().items()}
    return {"format": shipped.FORMAT, "kind": "ensemble", "members": [stripped(p, half) for p in member_paths],
            "strategy": strategy.spec(), "strategy_state": state, "views": list(views), "flip": bool(flip),
            "data": dict(data)}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def publictest(model, root: str, batch: int = 256) -> dict:
    """Accuracy and macro F1 (%) of a module on FER2013 PublicTest, duplicates dropped."""
    import lightning as L

    from lightning_fer.build import build

    dm = build(REPO / "configs/fer2013/quick_member.yaml", [f"--data.init_args.root={root}",
                                                           f"--data.init_args.loader.batch_size={batch}"]).datamodule
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    out = trainer.test(model, datamodule=dm, verbose=False)[0]
    return {"acc": round(100 * out["test/acc"], 2), "f1": round(100 * out["test/f1"], 2),
            "faces": int(len(dm.datasets["test"])), "split": "FER2013 PublicTest, duplicates dropped"}


def faces_per_second(name: str, root: str, n: int = 1024) -> dict:
    """The shipped model ``name`` loaded by name, on ``n`` FER2013 PublicTest crops (files: reading
    included) through ``lightning_fer.Predictor(name, face_box="image")`` with the runtime it
    chooses (``auto``), on one thread after a warm-up: the figure ``pretrained`` lists."""
    import torch

    files = publictest_crops(root, n)
    if not files:
        raise SystemExit(f"{root}/val: no PublicTest crops to time (pass --root)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fps, runtime = analyze_faces_per_s(name, files)
        where = machine()  # with the one thread it ran on
    finally:
        torch.set_num_threads(threads)
    return {"faces_per_s": round(fps, 1), "runtime": runtime, "threads": 1, "faces": len(files), "measured_on": where}


def fitted_strategy(members: list[str], strategy: str, root: str, views: list[str], flip: bool, num_folds: int = 5):
    """The strategy over the members, fitted (where it learns) on fold 0 through the library's
    EnsembleModule (its leak check refuses members trained on fold 0)."""
    from lightning_fer.build import build
    from lightning_fer.ensemble.module import EnsembleModule
    from lightning_fer.ensemble.strategy import strategy_from_spec

    s = strategy_from_spec({"class_path": strategy, "init_args": {}})
    ens = EnsembleModule(members, s, views=views, flip=flip)
    if s.requires_fit:
        dm = build(REPO / "configs/fer2013/quick_member.yaml", [f"--data.init_args.root={root}"],
                   {"data": {"init_args": {"folds": {"fold": 0, "num_folds": num_folds}}}}).datamodule
        dm.prepare_data()
        dm.setup("validate")
        ens.fit_strategy(dm)
    return ens.strategy


def main(argv: list[str] | None = None) -> Path:
    from lightning_fer import zoo
    from lightning_fer.files import save_torch, write_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--member", default=None, help="the best single member's checkpoint (fer2013)")
    ap.add_argument("--member-recipe", default="configs/fer2013/best_member.yaml")
    ap.add_argument("--fast", default=None, help="the fast member's checkpoint (fer2013-fast: python -m benchmarks.fast)")
    ap.add_argument("--fast-what", default="one small network: fer_vgg widths 16-128, depths 1-2-2-2 (0.29M parameters), "
                    "48 px grey faces, no TTA, distilled from fer2013 (the face and its mirror)")
    ap.add_argument("--ensemble-run", type=Path, default=None,
                    help="a finished cv run folder (configs/fer2013/cv.yaml); without it only fer2013 is written")
    ap.add_argument("--ensemble-members", nargs="+", default=[])
    ap.add_argument("--strategy", default="lightning_fer.ensemble.SoftVote")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zoo", action="store_true",
                    help="--ensemble-run is a zoo run (configs/fer2013/cv_zoo.yaml): members in fold0/, trained on all of "
                         "Training but the 10%% hold-out slice (fold 0 of 10), where the strategy learns")
    ap.add_argument("--member-what", default=None, help="what the --member network is (default: fer_vgg 32-256)")
    ap.add_argument("--root", default=DATA["root"],
                    help="FER2013, spelt as the members' configs spell it (the leak check compares the data's source as "
                         "written: run from the repository root)")
    ap.add_argument("--out", type=Path, default=shipped.SHIPPED)
    ap.add_argument("--speed", nargs="*", default=None, metavar="NAME",
                    help="measure faces/s of these shipped models (none named: every one) into the registry; the "
                         "models written in this run are measured anyway")
    args = ap.parse_args(argv)
    if not (args.member or args.fast or args.ensemble_run or args.speed is not None):
        ap.error("name at least one model to write (--member, --fast or --ensemble-run) or to time (--speed)")
    args.out.mkdir(parents=True, exist_ok=True)
    shipped.SHIPPED, shipped.REGISTRY = args.out, args.out / "models.json"  # measured where written
    t0 = time.perf_counter()
    bundles = {}
    if args.member:
        bundles["fer2013"] = (member_bundle(args.member, DATA), {
            "what": args.member_what or "one network: the VGG-style fer_vgg (widths 32-256, 1.17M parameters), 48 px grey "
                                        "faces, flip TTA",
            "recipe": f"{args.member_recipe} (30 epochs, SGD one-cycle, final weights), all of FER2013 Training"
                      if not args.zoo else f"{args.member_recipe} (cv: configs/fer2013/cv_zoo.yaml), all of FER2013 "
                                           "Training but the 10% hold-out slice"})
    if args.fast:
        bundles["fer2013-fast"] = (member_bundle(args.fast, DATA), {
            "what": args.fast_what,
            "recipe": "python -m benchmarks.fast (configs/fer2013/fast_member.yaml: 40 epochs, SGD one-cycle, final weights, "
                      "on fer2013's soft targets and the labels), all of FER2013 Training"})
    if args.ensemble_run is not None:
        member_paths = []
        for name in args.ensemble_members:
            done = args.ensemble_run / ("fold0" if args.zoo else f"fold0-seed{args.seed}") / name / "done.json"
            if not done.is_file():
                raise SystemExit(f"{done}: member {name} has not finished; run `python -m lightning_fer cv --config "
                                 "configs/fer2013/cv.yaml` first")
            member_paths.append(json.loads(done.read_text())["checkpoint"])
        strategy = fitted_strategy(member_paths, args.strategy, args.root, ["face"], True, 10 if args.zoo else 5)
        bundles["fer2013-ensemble"] = (ensemble_bundle(member_paths, strategy, ["face"], True, DATA), {
            "what": f"{strategy.name} of {len(member_paths)} networks ({', '.join(args.ensemble_members)}) on the face "
                    "and its mirror, 48 px grey faces",
            "recipe": f"configs/fer2013/cv.yaml seed {args.seed} (members on folds 1-4 of Training; fold 0 held out"
                      f"{', where the strategy learnt' if strategy.requires_fit else ''})" if not args.zoo else
                      "configs/fer2013/cv_zoo.yaml (members on all of Training but the 10% hold-out slice"
                      f"{', where the strategy learnt' if strategy.requires_fit else ''})"})
    old = args.out / "models.json"
    before = json.loads(old.read_text()) if old.is_file() else {}
    models = before.get("models", {})  # the names not rewritten are kept
    for name, (bundle, info) in bundles.items():
        path = save_torch(bundle, args.out / f"{name}.pt")
        models[name] = {"file": path.name, "sha256": shipped.sha256(path), "bytes": path.stat().st_size, "kind": bundle["kind"],
                        "data": "FER2013 (Kaggle 2013): 48 px grey faces, 7 classes, Training split, duplicates dropped",
                        "commit": commit(), "licence": LICENCE, **info}
    reg = {"note": "written by benchmarks/ship.py; every load checks each file's sha256", "models": models,
           **({"measured_on": before["measured_on"]} if "measured_on" in before else {})}
    write_text(args.out / "models.json", json.dumps(reg, indent=1) + "\n")
    for name in bundles:  # measured as shipped: loaded by name, float16 weights, hash checked
        models[name]["publictest"] = publictest(zoo.pretrained(name), args.root)
        print(name, models[name]["publictest"], flush=True)
    asked = [] if args.speed is None else args.speed or list(models)  # --speed alone: every shipped model
    timed = list(bundles) + [n for n in asked if n not in bundles]
    for name in timed:
        if name not in models:
            raise SystemExit(f"--speed {name}: not a shipped model ({', '.join(models)})")
        models[name]["speed"] = faces_per_second(name, args.root)
        print(name, models[name]["speed"], flush=True)
    if bundles:
        reg["measured_on"] = machine()
    write_text(args.out / "models.json", json.dumps(reg, indent=1) + "\n")
    print(zoo.describe())
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return args.out / "models.json"


if __name__ == "__main__":
    main()
