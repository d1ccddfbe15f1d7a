"""Progress of long data passes (landmark indexing, duplicate hashing): a tqdm bar with images/s
and time left on a terminal, a log line every ``every`` seconds otherwise (CI logs, nohup)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


class Progress:
    """Count ``total`` items as they finish.

    Example:
        >>> with Progress(3, "hashing", enabled=False) as p:
        ...     p.update(3)
        >>> p.done
        3
    """

    def __init__(self, total: int, desc: str, unit: str = "img", every: float = 15.0, enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done = 0
        self.enabled = enabled and total > 0
        self._bar = None
        self._t0 = self._last = time.perf_counter()
        if self.enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last >= self.every and self.done < self.total:
            self._last = now
            rate = self.done / max(now - self._t0, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            log.info("%s: %d/%d %ss (%.0f%%), %.1f %ss/s, about %.0f s left", self.desc, self.done, self.total,
                     self.unit, 100 * self.done / self.total, rate, self.unit, left)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
