"""slam.memory.peak_rss_mb: a process's own peak, not the peak of the (large) process that started it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from slam.memory import peak_rss_mb


def test_child_of_a_large_process_reports_its_own_peak():
    ballast = np.ones(40_000_000)  # 320 MB, touched: this process's peak is at least that
    assert peak_rss_mb() > 300
    code = "from slam.memory import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1 < child < 150  # ru_maxrss would have reported the parent's 300+ MB here
    del ballast


def test_falls_back_to_rusage_without_proc(tmp_path):
    assert peak_rss_mb(tmp_path / "no-status") > 1
