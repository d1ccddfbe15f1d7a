"""Helpers the tests import (``from helpers import REPO, tiny_args``): paths, the tiny demo set's
command-line overrides, and a parse-only CLI. Fixtures are in ``conftest.py``."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FER2013 = Path(os.environ.get("LIGHTNING_FER_FER2013", REPO.parent / "shared" / "data" / "fer2013"))


def tiny_args(root: str | Path, subjects: int = 17) -> list[str]:
    """CLI overrides for a tiny demo set: `subjects` people (2 held out), one image per class,
    80 px, so that fold 0 of 5 validates 3 people x 7 = 21 images (an odd count)."""
    return [
        "--data.init_args.source=lightning_fer.data.SyntheticSource",
        f"--data.init_args.source.init_args.root={root}",
        f"--data.init_args.source.init_args.num_subjects={subjects}",
        "--data.init_args.source.init_args.images_per_class=1",
        "--data.init_args.source.init_args.test_subjects=2",
        "--data.init_args.source.init_args.image_size=80",
        "--data.init_args.loader.num_workers=0",
        "--data.init_args.loader.batch_size=4",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


def parse_only(args: list[str]):
    """Parse (and validate) a CLI command's options without building or running anything."""
    import lightning as L

    from lightning_fer.build import FERCLI
    from lightning_fer.data import FERDataModule

    class ParseOnly(FERCLI):
        def instantiate_classes(self):
            pass

    return ParseOnly(L.LightningModule, FERDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     parser_kwargs={"parser_mode": "omegaconf+"}, args=args, run=False)
