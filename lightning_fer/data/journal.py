"""A JSON cache of keyed entries that survives being killed while it is built: finished entries
are appended to a journal (fsync'd per chunk), and the cache itself only ever appears whole."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lightning_fer.files import stale_temporaries, write_text

log = logging.getLogger(__name__)


class JournaledCache:
    """Entries ``{"k": key, ...}`` under a header; a cache or journal with another header is
    thrown away (the settings changed), and a journal's torn last line is cut.

    Example:
        >>> import tempfile
        >>> cache = JournaledCache(Path(tempfile.mkdtemp()) / "index.json", {"version": 1})
        >>> with cache.journal() as append:
        ...     append([{"k": "a.jpg", "ok": True}])
        >>> cache.load(), cache.journal_file.exists()
        ({'a.jpg': {'k': 'a.jpg', 'ok': True}}, True)
        >>> cache.finish([{"k": "a.jpg", "ok": True}]); cache.journal_file.exists()
        False
    """

    def __init__(self, path: str | os.PathLike, header: dict) -> None:
        self.path = Path(path)
        self.journal_file = self.path.with_name(self.path.name + ".journal")
        self.header = header

    def load(self) -> dict[str, dict]:
        """The finished cache's entries, updated with those of an interrupted run's journal."""
        for stale in stale_temporaries(self.path):
            stale.unlink(missing_ok=True)  # left by a run killed while renaming
        entries = self._load_final()
        entries.update(self._load_journal())
        return entries

    def _load_final(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            log.warning("cache %s is unreadable (%s); rebuilding it", self.path, err)
            return {}
        if data.get("header") != self.header:
            log.info("cache %s was made with other settings; rebuilding it", self.path)
            return {}
        return {e["k"]: e for e in data.get("entries", [])}

    def _load_journal(self) -> dict[str, dict]:
        if not self.journal_file.is_file():
            return {}
        raw = self.journal_file.read_bytes()
        lines = raw.split(b"\n")  # the last element is b"" after a complete final line, or a torn fragment
        try:
            header = json.loads(lines[0]) if lines and lines[0] else None
        except json.JSONDecodeError:
            header = None
        if header != self.header or len(lines) < 2:
            self.journal_file.unlink(missing_ok=True)
            return {}
        entries: dict[str, dict] = {}
        good_end = len(lines[0]) + 1
        for line in lines[1:-1]:
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                break
            entries[e["k"]] = e
            good_end += len(line) + 1
        if good_end < len(raw):
            with open(self.journal_file, "r+b") as f:
                f.truncate(good_end)  # so that appends start on a clean line
        return entries

    @contextmanager
    def journal(self) -> Iterator:
        """Yield ``append(entries)``: one write and one fsync per call, so a kill loses at most
        the entries of that call."""
        self.journal_file.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.journal_file.is_file()
        with open(self.journal_file, "a", encoding="utf-8") as f:
            if fresh:
                f.write(json.dumps(self.header) + "\n")

            def append(entries: list[dict]) -> None:
                f.write("".join(json.dumps(e) + "\n" for e in entries))
                f.flush()
                os.fsync(f.fileno())

            yield append

    def finish(self, entries: list[dict]) -> None:
        """Write the finished cache (atomically) and drop the journal."""
        write_text(self.path, json.dumps({"header": self.header, "entries": entries}))
        self.journal_file.unlink(missing_ok=True)
