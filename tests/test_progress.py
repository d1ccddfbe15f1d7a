"""Progress of long data passes: periodic log lines where there is no terminal."""

from __future__ import annotations

import logging

from lightning_fer.progress import Progress


def test_progress_logs_count_rate_and_time_left_without_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="lightning_fer"), Progress(10, "landmarks", every=0.0) as bar:
        for _ in range(4):
            bar.update(2)
        bar.update(2)  # the last update says nothing: the caller reports the total
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and bar.done == 10
    assert lines[0].startswith("landmarks: 2/10 imgs (20%)") and "imgs/s, about" in lines[0] and lines[0].endswith("s left")
