"""Atomic file writes: whatever is written appears whole under its name, or not at all."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: str | os.PathLike) -> Path:
    """The hidden name beside ``path`` that :func:`atomic_path` writes to (its suffix kept, so
    that libraries choosing a format by extension still see it)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files a killed process left beside ``path``."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.stem}.tmp*{path.suffix}"))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; when the block ends without error it is renamed
    onto ``path`` (a file or a folder), otherwise removed.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "table.md"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("| a |")
        >>> out.read_text(), temporary_name(out).exists()
        ('| a |', False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_csv(path: str | os.PathLike, header: list[str], rows: Iterable[Iterable]) -> Path:
    """A CSV file with ``header`` and ``rows``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def save_torch(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path``, atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def home() -> Path:
    """The library's cache folder: ``$LIGHTNING_FER_HOME``, else ``~/.cache/lightning_fer``."""
    return Path(os.environ.get("LIGHTNING_FER_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "lightning_fer"))
