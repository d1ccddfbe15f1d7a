"""Byte-identical images: found by content hash, and what to do with them.

Web-scraped sets hold copies of one image, sometimes under different labels, sometimes in both
the training and the test split (FER2013: 1,273 groups of identical files, 47 with conflicting
labels, 270 spanning Training and PublicTest). A copy of a test image in the training data
inflates test figures; a copy with another label is noise in both.

Policy ``drop`` keeps, of every group of identical files, one copy in the most protected split
(``test``, then ``val``, then ``train``) and drops the rest; a group whose copies carry different
labels is dropped whole. Every decision is written to a CSV (group, digest, path, split, label,
action, reason) and summed in a :class:`DuplicateReport`.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lightning_fer.data.sources import Record
from lightning_fer.files import write_csv
from lightning_fer.progress import Progress

DuplicatePolicy = Literal["keep", "drop"]
#: Which copy of a duplicated image is kept: the one in the first split of this order.
SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2, None: 2, "": 2}


def file_digest(path: str) -> str:
    """MD5 of a file's bytes (identity of content, not a security measure)."""
    with open(path, "rb") as f:
        return hashlib.md5(f.read(), usedforsecurity=False).hexdigest()


def file_digests(paths: list[str], num_workers: int = 4) -> list[str]:
    """MD5 of every file, read by a few threads (reading small files is I/O bound)."""
    out: list[str] = []
    with ThreadPoolExecutor(max(1, num_workers)) as pool, Progress(len(paths), "hashing for duplicates") as bar:
        for start in range(0, len(paths), 1024):
            out.extend(pool.map(file_digest, paths[start : start + 1024], chunksize=64))
            bar.update(len(out) - bar.done)
    return out


@dataclass
class DuplicateReport:
    """What :func:`resolve_duplicates` found and decided."""

    groups: int = 0
    files: int = 0
    conflicting_groups: int = 0
    cross_split_groups: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> images
    dropped_by_split: Counter = field(default_factory=Counter)  # split -> images

    def __str__(self) -> str:
        drops = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        return (
            f"{self.groups} groups of identical images ({self.files} files), {self.conflicting_groups} with "
            f"conflicting labels, {self.cross_split_groups} spanning splits; dropped: {drops}"
        )


def resolve_duplicates(
    records: list[Record],
    usable: np.ndarray,
    digests: list[str | None],
    class_names: list[str],
    report_csv: str | os.PathLike | None = None,
) -> tuple[np.ndarray, DuplicateReport]:
    """Decide which copies of identical images to drop.

    Args:
        records: the source's records.
        usable: which records are usable at all (readable, with landmarks); others are ignored.
        digests: content digest per record (``None`` for unusable ones).
        class_names: for the report.
        report_csv: where to write one row per image of every duplicate group (written to a
            temporary name, then renamed).

    Returns:
        ``drop``, a boolean mask over ``records``, and the report.

    Example:
        >>> recs = [Record("a", "a", 0, split="train"), Record("b", "b", 0, split="test"),
        ...         Record("c", "c", 1, split="train"), Record("d", "d", 2, split="train")]
        >>> drop, rep = resolve_duplicates(recs, np.ones(4, bool), ["x", "x", "y", "y"], ["p", "q", "r"])
        >>> drop.tolist(), dict(rep.dropped)
        ([True, False, True, True], {'copy of a test image': 1, 'conflicting labels': 2})
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(digests):
        if usable[i] and d is not None:
            groups[d].append(i)
    drop = np.zeros(len(records), dtype=bool)
    report = DuplicateReport()
    rows = []
    gid = 0
    for digest, members in groups.items():
        if len(members) < 2:
            continue
        gid += 1
        report.groups += 1
        report.files += len(members)
        members = sorted(members, key=lambda i: (SPLIT_PRIORITY.get(records[i].split, 2), records[i].key))
        labels = {records[i].label for i in members}
        splits = {SPLIT_PRIORITY.get(records[i].split, 2) for i in members}
        if len(splits) > 1:
            report.cross_split_groups += 1
        decisions: dict[int, str] = {}
        if len(labels) > 1:
            report.conflicting_groups += 1
            decisions = {i: "conflicting labels" for i in members}
        else:
            keep = members[0]
            for i in members[1:]:
                same = records[i].split == records[keep].split
                decisions[i] = "duplicate" if same else f"copy of a {records[keep].split or 'train'} image"
        for i in members:
            why = decisions.get(i)
            if why:
                drop[i] = True
                report.dropped[why] += 1
                report.dropped_by_split[records[i].split or "train"] += 1
            r = records[i]
            rows.append([gid, digest, r.path, r.split or "", class_names[r.label], "dropped" if why else "kept", why or ""])
    if report_csv is not None:
        write_csv(report_csv, ["group", "md5", "path", "split", "label", "action", "reason"], rows)
    return drop, report
