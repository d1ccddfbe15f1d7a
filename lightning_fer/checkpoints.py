"""Loading checkpoints safely: ``torch.load`` with ``weights_only=True``, and a file that holds
pickled objects refused in one line that names the file and what it holds."""

from __future__ import annotations

import os
import re

import torch

__all__ = ["UnsafeCheckpointError", "safe_load", "unsafe_message"]


class UnsafeCheckpointError(ValueError):
    """A checkpoint that the weights-only loader refuses (it holds pickled objects, which could
    run code when loaded); names the file and the blocked object."""


def safe_load(path: str | os.PathLike, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; a file that holds anything but tensors and plain
    data raises :class:`UnsafeCheckpointError` naming the file and the object that was blocked."""
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(unsafe_message(path, err)) from None


def unsafe_message(path, err: BaseException) -> str:
    """One line for a file the weights-only loader refused: the file, the blocked global."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err)) or re.search(r"Unsupported global: ([\w.]+)", str(err))
    what = found.group(1) if found else str(err).strip().splitlines()[0][:120]
    return (f"{path}: refused by the weights-only loader: it holds {what}, a pickled object that could run code when "
            "loaded; use checkpoints written by lightning_fer (or re-save the weights alone)")
