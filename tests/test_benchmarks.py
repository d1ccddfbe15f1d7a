"""The benchmark suite's smallest case runs (no time is asserted)."""

from __future__ import annotations

import subprocess
import sys

from conftest import FER2013, REPO


def test_quick_benchmarks_run_and_print_tables():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--fer2013", str(FER2013)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## backbones (quick)" in out and "## ensemble (quick)" in out
    assert "Machine:" in out and "| sum of the members (baseline) |" in out and "| resnet50 | 80 |" in out
    if (FER2013 / "train").is_dir():
        assert "| decode only (OpenCV), 1 process |" in out
    else:
        assert "## data: skipped" in out
