"""Peak resident memory of this process.

`getrusage(RUSAGE_SELF).ru_maxrss` survives execve on Linux: a process started by a large parent (a test
runner, a Ray worker, a benchmark driver) reports the parent's peak as its own. /proc/self/status VmHWM
belongs to the process's own address space, so it is used where it exists.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb(status: Path = Path("/proc/self/status")) -> float:
    """The high-water mark of resident memory in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
