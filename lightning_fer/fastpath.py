"""The arithmetic a machine does fastest, chosen in one place: mixed precision and channels-last
where the hardware has units for it (GPUs; CPUs with bf16 matrix units), float32 elsewhere.

``auto`` decides from the device and, on a CPU, from its flags (``amx_bf16`` or ``avx512_bf16``
in ``/proc/cpuinfo``); ``on`` and ``off`` force it. ``$LIGHTNING_FER_CPU_FLAGS`` replaces the flags
read from the machine (tests, or platforms without ``/proc/cpuinfo``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

log = logging.getLogger(__name__)

#: CPU flags of bf16 matrix units: with them, bf16 matrix multiplies run several times float32's speed.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
FLAGS_ENV = "LIGHTNING_FER_CPU_FLAGS"
Setting = Literal["auto", "on", "off"]


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``$LIGHTNING_FER_CPU_FLAGS`` if set, else ``/proc/cpuinfo``)."""
    forced = os.environ.get(FLAGS_ENV)
    if forced is not None:
        return set(forced.replace(",", " ").split())
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16_units() -> bool:
    return any(f in cpu_flags() for f in BF16_FLAGS)


@dataclass(frozen=True)
class FastPath:
    """What runs: the Trainer's ``precision``, channels-last memory, and why.

    Example:
        >>> fp = choose("off")
        >>> fp.precision, fp.channels_last, fp.autocast_dtype
        ('32-true', False, None)
    """

    precision: str
    channels_last: bool
    device: str
    reason: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype outside a Trainer (``None``: float32)."""
        return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for this choice (a no-op for float32), for code outside a Trainer."""
        dtype = self.autocast_dtype
        return torch.autocast(self.device, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _device(accelerator: str | None) -> str:
    if accelerator in (None, "auto", "gpu", "cuda"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu" if accelerator == "cpu" else str(accelerator)


def choose(setting: Setting = "auto", accelerator: str | None = "auto") -> FastPath:
    """The fast path for ``setting`` on the device ``accelerator`` resolves to."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"fast_path must be 'auto', 'on' or 'off', got {setting!r}")
    device = _device(accelerator)
    if setting == "off":
        return FastPath("32-true", False, device, "fast_path=off")
    if device == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return FastPath("bf16-mixed" if bf16 else "16-mixed", True, device, "a GPU")
    if cpu_has_bf16_units():
        return FastPath("bf16-mixed", True, device, f"a CPU with bf16 matrix units ({', '.join(sorted(set(BF16_FLAGS) & cpu_flags()))})")
    if setting == "on":
        return FastPath("bf16-mixed", True, device, "fast_path=on (this CPU has no bf16 matrix units: expect it slower)")
    return FastPath("32-true", False, device, "a CPU without bf16 matrix units (no amx_bf16 or avx512_bf16)")


def describe(fp: FastPath) -> str:
    return f"fast path: precision {fp.precision}, {'channels-last' if fp.channels_last else 'contiguous'} ({fp.reason})"


def apply(model, fp: FastPath, channels_last: bool | None = None, compile: bool = False) -> list[str]:
    """Put ``model`` (a classifier or an ensemble: anything with ``set_channels_last`` and
    ``compile_backbone``) in the memory format ``channels_last`` says (``None``: the fast path's
    choice), and compile it if asked; returns what was chosen, for the log."""
    chosen = []
    if hasattr(model, "set_channels_last"):
        on = fp.channels_last if channels_last is None else bool(channels_last)
        model.set_channels_last(on)
        chosen.append("channels-last" if on else "contiguous")
    if compile and hasattr(model, "compile_backbone"):
        model.compile_backbone()
        chosen.append("torch.compile")
    return chosen
