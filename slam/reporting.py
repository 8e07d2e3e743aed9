"""What a run tells the user besides its results: warnings about the input, the frames it skipped, and the
traceback of an internal failure (kept in a file, so the terminal gets one clear line)."""

from __future__ import annotations

import dataclasses
import sys
import traceback
from pathlib import Path
from typing import Any

from slam.io.base import Sequence
from slam.trajectory import write_text_atomic

TRACEBACK_FILE = "traceback.txt"


def warn(message: str) -> None:
    """One line on stderr, printed above the progress bar rather than through it."""
    from tqdm import tqdm

    tqdm.write(f"slam: warning: {message}", file=sys.stderr)


def report_input_problems(sequence: Sequence) -> None:
    """Warn about what the reader noticed when opening, and about each frame skipped later, once, as it happens."""
    for message in sequence.warnings:
        warn(message)
    for skipped in sequence.skipped:
        warn(skipped.message())
    sequence.on_skip = lambda skipped: warn(skipped.message())


def input_problems(sequence: Sequence) -> dict[str, Any]:
    """run.json's record of the input's problems: skipped frames with their reasons, and the reader's warnings."""
    return {
        "skipped_frames": len(sequence.skipped),
        "skipped": [dataclasses.asdict(skipped) for skipped in sequence.skipped],
        "input_warnings": list(sequence.warnings),
    }


def save_traceback(out_dir: Path, exc: BaseException) -> Path:
    """Write the failure's full traceback (with its causes) beside the outputs; returns the file."""
    path = Path(out_dir) / TRACEBACK_FILE
    write_text_atomic(path, "".join(traceback.format_exception(exc)))
    return path
