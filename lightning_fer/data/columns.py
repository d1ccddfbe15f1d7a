"""Columns instead of per-record Python objects: one safetensors file of raw arrays, memory-mapped.

A data set of a million faces held as a ``Record`` dataclass per row costs kilobytes of Python
objects per row in every process, and forked loader workers copy those objects page by page as
their reference counts change. Here every column is a NumPy array (strings as one byte buffer
and offsets), written once into a single file and memory-mapped read-only by every process and
worker: the pages are the operating system's page cache, shared, never copied.

The file is safetensors (written by the ``safetensors`` library: a JSON header of names, dtypes,
shapes and offsets, then the arrays, aligned, and no pickle), with the writer's own header as
JSON under the ``lightning_fer`` metadata key. It is read here by memory-mapping each array at
the offset its header gives (safetensors' own readers copy). It is written under a temporary
name, fsync'd and renamed, so a kill leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lightning_fer.files import atomic_path

#: the metadata key that marks a lightning_fer column file and holds its header
KEY = "lightning_fer"
#: safetensors' dtype names
DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16, "F16": np.float16,
          "U32": np.uint32, "I32": np.int32, "F32": np.float32, "U64": np.uint64, "I64": np.int64, "F64": np.float64}
#: a header longer than this is not one (a stray file's first 8 bytes read as a length)
MAX_HEADER = 1 << 28


class ColumnFileError(ValueError):
    """A column file is not one, or is cut short."""


def write_columns(path: str | os.PathLike, arrays: dict[str, np.ndarray], header: dict | None = None) -> Path:
    """Write ``arrays`` (and a JSON-able ``header``) to ``path`` atomically (fsync'd before the rename)."""
    from safetensors.numpy import save_file

    known = {np.dtype(t) for t in DTYPES.values()}
    plain = {}
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.hasobject or a.dtype.newbyteorder("<") not in known:
            raise TypeError(f"column {name!r} holds {a.dtype}; give a numeric or boolean array")
        plain[name] = a.astype(a.dtype.newbyteorder("<"), copy=False)
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata={KEY: json.dumps(header or {})})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    return Path(path)


def read_header(path: str | os.PathLike) -> tuple[dict, dict, int]:
    """``(header, layout, data start)`` of a column file, reading only its head."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        lead = f.read(8)
        n = int.from_bytes(lead, "little") if len(lead) == 8 else -1
        if not 2 <= n <= min(size - 8, MAX_HEADER):
            raise ColumnFileError(f"{path}: not a lightning_fer column file")
        raw = f.read(n)
    try:
        layout = json.loads(raw)
        header = json.loads(layout.pop("__metadata__")[KEY])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ColumnFileError(f"{path}: not a lightning_fer column file") from None
    return header, layout, 8 + n


def read_columns(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """``(header, arrays)`` of a column file; the arrays are read-only memory maps (empty ones
    are plain arrays: a zero-length map is not allowed)."""
    header, layout, start = read_header(path)
    size = os.path.getsize(path)
    out: dict[str, np.ndarray] = {}
    for name, spec in layout.items():
        dtype, shape = np.dtype(DTYPES[spec["dtype"]]), tuple(spec["shape"])
        begin, end = spec["data_offsets"]
        if start + end > size:
            raise ColumnFileError(f"{path}: cut short in column {name!r}")
        # A plain ndarray view of the map (indexing a np.memmap costs 10x more per call).
        out[name] = (np.asarray(np.memmap(path, dtype=dtype, mode="r", offset=start + begin, shape=shape)) if end > begin
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
