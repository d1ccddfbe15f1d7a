"""The synthetic demo faces as a source: drawn on first use (:mod:`lightning_fer.data.synthetic`), then read as a manifest."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from lightning_fer.data.classes import BASIC7
from lightning_fer.data.sources.base import FERSource, Record, SourceReport, format_landmarks
from lightning_fer.data.sources.manifest import ManifestSource, write_manifest
from lightning_fer.data.synthetic import _subject, draw_face
from lightning_fer.files import atomic_path, home

log = logging.getLogger(__name__)


def generate(
    root: str | os.PathLike,
    num_subjects: int = 30,
    images_per_class: int = 5,
    test_subjects: int = 6,
    image_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write the demo faces and ``manifest.csv`` under ``root`` (atomically) and return the
    manifest path. The last ``test_subjects`` subjects form the ``test`` split; the others carry
    no split, so folds are cut from them, subject-disjoint."""
    root = Path(root).expanduser()
    params = dict(
        num_subjects=num_subjects, images_per_class=images_per_class, test_subjects=test_subjects,
        image_size=image_size, seed=seed, version=1,
    )
    manifest = root / "manifest.csv"
    params_file = root / "params.json"
    if manifest.is_file() and params_file.is_file() and json.loads(params_file.read_text()) == params:
        return manifest
    if not 0 <= test_subjects < num_subjects:
        raise ValueError(f"test_subjects must be in [0, num_subjects), got {test_subjects} of {num_subjects}")
    if root.exists():
        shutil.rmtree(root)  # other parameters: drawn again
    try:  # two processes may draw the same set at once (cv jobs): the first to finish wins
        with atomic_path(root) as tmp:
            rows = []
            for s in range(num_subjects):
                subject = _subject(np.random.default_rng([seed, s]))
                split = "test" if s >= num_subjects - test_subjects else ""
                for c, expression in enumerate(BASIC7):
                    for i in range(images_per_class):
                        rng = np.random.default_rng([seed, s, c, i])
                        img, pts, box = draw_face(subject, expression, rng, image_size)
                        rel = f"images/s{s:03d}/{expression}_{i:02d}.jpg"
                        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(tmp / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                        rows.append(dict(
                            path=rel, label=expression, subject=f"s{s:03d}", split=split,
                            face_x=f"{box[0]:.2f}", face_y=f"{box[1]:.2f}", face_width=f"{box[2]:.2f}",
                            face_height=f"{box[3]:.2f}", landmarks=format_landmarks(pts),
                        ))
            write_manifest(tmp / "manifest.csv", rows)
            (tmp / "params.json").write_text(json.dumps(params))
    except OSError:
        if not (manifest.is_file() and params_file.is_file() and json.loads(params_file.read_text()) == params):
            raise
        log.info("%s: drawn by another process meanwhile; using it", root)
    log.info("wrote %d synthetic faces to %s", len(rows), root)
    return manifest


def default_root() -> Path:
    return home() / "synthetic"


class SyntheticSource(FERSource):
    """The synthetic demo faces as a source: generated on first use, then read as a manifest.

    Args:
        root: where to write them (default ``$LIGHTNING_FER_HOME/synthetic`` or
            ``~/.cache/lightning_fer/synthetic``).
        num_subjects: number of identities.
        images_per_class: images of each expression per subject.
        test_subjects: identities held out as the ``test`` split.
        image_size: side of the square images in pixels.
        seed: generation seed.

    Example:
        >>> import tempfile
        >>> src = SyntheticSource(tempfile.mkdtemp(), num_subjects=3, images_per_class=1, test_subjects=1, image_size=64)
        >>> records, classes, _ = src.load()
        >>> len(records), classes[:3], records[0].landmarks.shape
        (21, ['neutral', 'happy', 'sad'], (68, 2))
    """

    def __init__(
        self,
        root: str | None = None,
        num_subjects: int = 30,
        images_per_class: int = 5,
        test_subjects: int = 6,
        image_size: int = 128,
        seed: int = 0,
    ) -> None:
        base = Path(root).expanduser() if root else default_root()
        self.root = base / f"n{num_subjects}-k{images_per_class}-t{test_subjects}-px{image_size}-s{seed}"
        self.kwargs = dict(
            num_subjects=num_subjects, images_per_class=images_per_class, test_subjects=test_subjects,
            image_size=image_size, seed=seed,
        )

    def load(self) -> tuple[list[Record], list[str], SourceReport]:
        manifest = generate(self.root, **self.kwargs)
        return ManifestSource(manifest, class_names=list(BASIC7)).load()
