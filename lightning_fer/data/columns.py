"""Columns instead of per-record Python objects: one file of raw arrays, memory-mapped.

A data set of a million faces held as a ``Record`` dataclass per row costs kilobytes of Python
objects per row in every process, and forked loader workers copy those objects page by page as
their reference counts change. Here every column is a NumPy array (strings as one byte buffer
and offsets), written once into a single file and memory-mapped read-only by every process and
worker: the pages are the operating system's page cache, shared, never copied.

The file: 8 bytes of magic, the length of a JSON header, the header (names, dtypes, shapes and
offsets of the arrays, plus whatever the writer adds), then the arrays, each 64-byte aligned.
It is written under a temporary name and renamed, so a kill leaves the old file or the new one,
never half of either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lightning_fer.files import atomic_path

MAGIC = b"LFERCOL1"
_ALIGN = 64


class ColumnFileError(ValueError):
    """A column file is not one, or is cut short."""


def write_columns(path: str | os.PathLike, arrays: dict[str, np.ndarray], header: dict | None = None) -> Path:
    """Write ``arrays`` (and a JSON-able ``header``) to ``path`` atomically (fsync'd before the rename)."""
    layout, offset = {}, 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.hasobject:
            raise TypeError(f"column {name!r} holds Python objects; give a numeric or fixed-width array")
        layout[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    head = json.dumps({"arrays": layout, "header": header or {}}).encode()
    start = -(-(16 + len(head)) // _ALIGN) * _ALIGN
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC + len(head).to_bytes(8, "little") + head)
            f.write(b"\0" * (start - 16 - len(head)))
            for a in arrays.values():
                a = np.ascontiguousarray(a)
                f.write(a.tobytes())
                f.write(b"\0" * (-a.nbytes % _ALIGN))
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def read_header(path: str | os.PathLike) -> tuple[dict, dict, int]:
    """``(header, layout, data start)`` of a column file, reading only its head."""
    with open(path, "rb") as f:
        lead = f.read(16)
        if len(lead) < 16 or lead[:8] != MAGIC:
            raise ColumnFileError(f"{path}: not a lightning_fer column file")
        n = int.from_bytes(lead[8:], "little")
        raw = f.read(n)
    if len(raw) < n:
        raise ColumnFileError(f"{path}: cut short in its header")
    meta = json.loads(raw)
    return meta["header"], meta["arrays"], -(-(16 + n) // _ALIGN) * _ALIGN


def read_columns(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """``(header, arrays)`` of a column file; the arrays are read-only memory maps (empty ones
    are plain arrays: a zero-length map is not allowed)."""
    header, layout, start = read_header(path)
    size = os.path.getsize(path)
    out: dict[str, np.ndarray] = {}
    for name, spec in layout.items():
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        at = start + spec["offset"]
        if at + nbytes > size:
            raise ColumnFileError(f"{path}: cut short in column {name!r}")
        # A plain ndarray view of the map (indexing a np.memmap costs 10x more per call).
        out[name] = (np.asarray(np.memmap(path, dtype=dtype, mode="r", offset=at, shape=shape)) if nbytes
                     else np.zeros(shape, dtype))
    return header, out


class Rows(Sequence):
    """A sequence read row by row: subclasses give ``__len__`` and ``row(i)`` (``0 <= i < len``);
    negative indices and slices (lists) come from here."""

    def row(self, i: int):
        raise NotImplementedError

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.row(j) for j in range(*i.indices(len(self)))]
        i = int(i)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        return self.row(i)


class StringColumn(Rows):
    """Strings as one UTF-8 byte buffer and ``N + 1`` offsets: no Python object per string
    until one is read.

    Example:
        >>> col = StringColumn.of(["a.jpg", "dir/b.png"])
        >>> len(col), col[1], list(col)
        (2, 'dir/b.png', ['a.jpg', 'dir/b.png'])
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def of(cls, strings: Iterable[str]) -> StringColumn:
        encoded = [s.encode() for s in strings]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        if encoded:
            np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> str:
        return self.data[self.offsets[i]: self.offsets[i + 1]].tobytes().decode()

    def __iter__(self) -> Iterator[str]:
        raw, off = self.data.tobytes(), self.offsets.tolist()
        for a, b in zip(off[:-1], off[1:]):
            yield raw[a:b].decode()

    def take(self, ids: Sequence[int]) -> list[str]:
        """The strings at ``ids``, as a list."""
        ids = np.asarray(ids, np.int64)
        if len(ids) < len(self) // 8:
            return [self.row(i) for i in ids.tolist()]
        raw, off = self.data.tobytes(), self.offsets.tolist()  # one copy of the buffer beats a slice per row
        return [raw[off[i]: off[i + 1]].decode() for i in ids.tolist()]

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        return {f"{name}.data": self.data, f"{name}.offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str) -> StringColumn:
        return cls(arrays[f"{name}.data"], arrays[f"{name}.offsets"])
