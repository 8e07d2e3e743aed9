"""Peak resident memory of this process.

`getrusage(RUSAGE_SELF).ru_maxrss` survives execve on Linux: a process started by a large parent (a test
runner, a Ray worker, a benchmark driver) reports the parent's peak as its own. /proc/self/status VmHWM
belongs to the process's own address space, so it is used where it exists.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


def release_free_heap() -> None:
    """Hand memory that malloc holds free back to the system (glibc's malloc_trim; nothing elsewhere).

    Each thread allocates from a malloc arena of its own, and what a finished thread (local mapping, loop
    closing, the reader) freed stays resident in its arena, where another thread's allocations cannot reuse it.
    Called once before the final whole-map BA, the run's peak: it released 4.5-7.5 MB there (threaded runs of
    teddy RGB-D, KITTI 06 stereo, KITTI 07 mono) in about 2 ms.
    """
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def _libc_function(name: str):
    """The C library's function `name`, or None where there is no such library or function (not glibc)."""
    library = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):
        return None


def release_compiler_code(library: str = "libllvmlite") -> int:
    """Unmap the resident code pages of numba's compiler (LLVM, in llvmlite's shared library); returns the bytes
    released. Call it once every kernel the run needs is loaded (System.warm_up): the run then calls compiled
    kernels only, and LLVM's code, were it needed again (a kernel compiled late), is read back from the page
    cache on demand.

    Here loading llvmlite and numba's cached kernels left all of LLVM's 80 MB of code resident (the kernel maps
    the library's code in large folios), 100 of a run's 290 MB before its first frame; nothing of the run itself
    touches it. Only clean, never-written code mappings are released (madvise MADV_DONTNEED: the pages are
    dropped from this process's page tables, not changed), so the call cannot alter what the program does.
    Linux only; elsewhere, and where the library is not loaded, it does nothing.
    """
    madvise = _libc_function("madvise")
    if madvise is None:
        return 0
    try:
        maps = Path("/proc/self/smaps").read_text()
    except OSError:
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for start, end, resident_kb in _releasable(maps, library):
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += resident_kb * 1024
    return released


_MADV_DONTNEED = 4  # Linux <sys/mman.h>


def _releasable(smaps: str, library: str) -> list[tuple[int, int, int]]:
    """(start, end, resident kB) of the library's code mappings that hold no written page."""
    return [(start, end, fields.get("Rss", 0)) for start, end, path, fields in _code_mappings(smaps)
            if library in path and fields.get("Private_Dirty", 1) == 0 and fields.get("Anonymous", 1) == 0]


def _code_mappings(smaps: str):
    """(start, end, path, {field: kB}) of each executable file mapping in /proc/self/smaps text."""
    entry = None
    for line in smaps.splitlines():
        head = line.split()
        if not head:
            continue
        if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line: range perms offset dev inode path
            if entry is not None:
                yield entry
            start, end = (int(x, 16) for x in head[0].split("-"))
            entry = (start, end, " ".join(head[5:]), {}) if len(head) > 5 and head[1] == "r-xp" else None
        elif entry is not None and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
            entry[3][head[0][:-1]] = int(head[1])
    if entry is not None:
        yield entry
