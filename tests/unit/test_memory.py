"""slam.memory.peak_rss_mb: a process's own peak, not the peak of the (large) process that started it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from slam.memory import _code_mappings, _releasable, peak_rss_mb


def test_child_of_a_large_process_reports_its_own_peak():
    ballast = np.ones(40_000_000)  # 320 MB, touched: this process's peak is at least that
    assert peak_rss_mb() > 300
    code = "from slam.memory import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1 < child < 150  # ru_maxrss would have reported the parent's 300+ MB here
    del ballast


def test_falls_back_to_rusage_without_proc(tmp_path):
    assert peak_rss_mb(tmp_path / "no-status") > 1


def test_compiler_code_released_and_compiled_kernels_still_run():
    code = """
import numba, numpy as np
from slam.memory import release_compiler_code

def resident_file_kb():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('RssFile:'))

@numba.njit
def add(a, b):
    return a + b

assert add(1, 2) == 3  # compiled: LLVM's code is resident
before = resident_file_kb()
released = release_compiler_code()
after = resident_file_kb()
assert add(3, 4) == 7  # a compiled kernel needs no compiler
assert add(1.5, 2.0) == 3.5  # a new signature: LLVM's code is read back on demand
print(released // 1024, before, after)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    released_kb, before, after = (int(x) for x in out)
    assert released_kb > 10_000  # LLVM's code is tens of MB
    assert before - after > 0.8 * released_kb  # the released pages left this process's resident memory


def test_only_clean_code_mappings_are_released():
    smaps = """\
7f0000000000-7f0000100000 r--p 00000000 fd:00 12 /lib/libllvmlite.so
Rss:                1024 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000100000-7f0000400000 r-xp 00100000 fd:00 12 /lib/libllvmlite.so
Rss:                3072 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000400000-7f0000500000 r-xp 00400000 fd:00 13 /lib/other dir/libpatched.so
Rss:                  64 kB
Private_Dirty:         4 kB
Anonymous:             4 kB
"""
    mappings = list(_code_mappings(smaps))
    assert [(m[0], m[1], m[2]) for m in mappings] == [
        (0x7F0000100000, 0x7F0000400000, "/lib/libllvmlite.so"),
        (0x7F0000400000, 0x7F0000500000, "/lib/other dir/libpatched.so")]
    assert mappings[0][3] == {"Rss": 3072, "Private_Dirty": 0, "Anonymous": 0}
    assert _releasable(smaps, "libllvmlite") == [(0x7F0000100000, 0x7F0000400000, 3072)]
    assert _releasable(smaps, "libpatched") == []  # a written page: left alone
    assert _releasable(smaps.replace("Anonymous:             0 kB\nVmFlags", "VmFlags"), "libllvmlite") == []
