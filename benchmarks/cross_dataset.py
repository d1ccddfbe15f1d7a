"""Cross-data-set testing: rows are what a model was trained on, columns what it is tested on.

    python -m benchmarks.cross_dataset [--spec benchmarks/cross_dataset.yaml] [--out benchmarks/results/cross_dataset.md] [--key=value ...]

Runs ``python -m lightning_fer test`` (in-process) for every model and data set of the spec
file: the model's own config and checkpoint, with the data set's overrides. Classes are matched
by name (``FERDataModule.match_classes``): images of classes a model does not know are left out
of its figures and counted in the table, classes the data lacks are named. Writes accuracy and
balanced accuracy per cell as Markdown, with the machine and the commands.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.common import machine, table  # noqa: E402


def run(spec_file: Path, out: Path, extra: list[str]) -> str:
    import yaml

    from lightning_fer.build import build

    spec = yaml.safe_load(spec_file.read_text())
    models, datasets = spec["models"], spec["datasets"]
    cells: dict[tuple[str, str], str] = {}
    notes, commands = [], []
    t0 = time.perf_counter()
    for mname, m in models.items():
        if not Path(m["ckpt"]).is_file():
            raise SystemExit(f"{spec_file}: model {mname!r}: checkpoint {m['ckpt']} does not exist; train it first "
                             f"(python -m lightning_fer fit --config {m['config']})")
        for dname, overrides in datasets.items():
            quiet = {"trainer": {"logger": False, "callbacks": [], "enable_progress_bar": False}}
            commands.append(" ".join(["python -m lightning_fer test --config", m["config"], *overrides,
                                      f"--ckpt_path={m['ckpt']}", "--trainer.logger=false", "--trainer.callbacks=[]",
                                      *extra]))
            cli = build(m["config"], list(overrides), quiet, list(extra))
            cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=m["ckpt"])
            metrics = cli.trainer.callback_metrics
            acc, bal = float(metrics["test/acc"]) * 100, float(metrics["test/balanced_acc"]) * 100
            match = cli.datamodule.class_match.get("test")
            left = ""
            if match:
                unknown = sum(match["unknown"].values())
                left = f" ({match['kept']} images; {unknown} of unknown classes left out)" if unknown else f" ({match['kept']} images)"
                if match["missing"]:
                    notes.append(f"- {mname} on {dname}: the data has no {', '.join(match['missing'])}")
            else:
                left = f" ({len(cli.datamodule.datasets['test'])} images)"
            cells[mname, dname] = f"{acc:.1f} / {bal:.1f}{left}"
    rows = [[m, *[cells[m, d] for d in datasets]] for m in models]
    text = "\n".join([
        "# Cross-data-set accuracy",
        "",
        f"Written by `python -m benchmarks.cross_dataset --spec {spec_file}` on {machine()}, in "
        f"{time.perf_counter() - t0:.0f} s. Each cell: accuracy / balanced accuracy (%) on the images whose class "
        "the model knows. Rows: trained on; columns: tested on.",
        "",
        table(["trained on \\ tested on", *datasets], rows),
        "",
        *(["Classes a model knows that a data set lacks:", "", *notes, ""] if notes else []),
        "Commands:",
        "",
        "```",
        *commands,
        "```",
        "",
    ])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(text)
    return text


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, default=HERE / "cross_dataset.yaml")
    p.add_argument("--out", type=Path, default=HERE / "results" / "cross_dataset.md")
    # Anything else (e.g. --data.init_args.loader.num_workers=0) is added to every test run.
    args, extra = p.parse_known_args(argv)
    return run(args.spec, args.out, extra)


if __name__ == "__main__":
    main()
