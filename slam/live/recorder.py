"""Records a live session as a TUM monocular folder that `slam run` (dataset.format tum, mode mono) replays.

Layout: rgb/<timestamp>.png (lossless, as captured: distorted), rgb.txt ('timestamp rgb/<name>.png'
per frame, appended as each image lands, so an interrupted recording stays readable) and
calibration.yaml (the intrinsics and distortion the session used). The frames recorded are those tracking
was handed, so a replay sees exactly what the live run saw.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.errors import SlamInputError
from slam.io.calibration import CALIBRATION_FILE, Calibration, write_calibration

LISTING = "rgb.txt"
IMAGE_DIR = "rgb"
_QUEUE = 64  # frames waiting for the disk; beyond that frames are skipped rather than stalling tracking
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # about 3x faster than the default level, files ~20% larger


@dataclass(frozen=True)
class RecordSummary:
    folder: str
    frames: int  # written and listed
    skipped: int  # not recorded because the disk fell behind


class Recorder:
    """Writes frames in its own thread; `add` never blocks tracking."""

    def __init__(self, folder: str | Path, calibration: Calibration, source_name: str = ""):
        self.folder = Path(folder)
        _check_empty(self.folder)
        (self.folder / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        write_calibration(self.folder / CALIBRATION_FILE, calibration)
        self._listing = open(self.folder / LISTING, "w")  # closed by close()
        self._listing.write(f"# color images\n# recorded by slam live from {source_name}\n# timestamp filename\n")
        self._listing.flush()
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE)
        self._written = 0
        self._skipped = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="slam-recorder", daemon=True)
        self._thread.start()

    def add(self, timestamp: float, image: np.ndarray) -> None:
        if self._error is not None:
            raise SlamInputError(f"recording failed: {self._error}", self.folder)
        try:
            self._queue.put_nowait((timestamp, image))
        except queue.Full:
            self._skipped += 1

    def close(self) -> RecordSummary:
        """Write what is queued, then stop (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if not self._listing.closed:
            self._listing.close()
        return self.summary()

    def summary(self) -> RecordSummary:
        return RecordSummary(str(self.folder), self._written, self._skipped)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(*item)
                except (OSError, cv2.error) as exc:
                    self._error = exc  # reported by the next add(); keep draining so close() returns

    def _write(self, timestamp: float, image: np.ndarray) -> None:
        name = f"{IMAGE_DIR}/{timestamp:.6f}.png"
        if not cv2.imwrite(str(self.folder / name), image, _PNG_FAST):
            raise OSError(f"cannot write {name}")
        self._listing.write(f"{timestamp:.6f} {name}\n")
        self._listing.flush()
        self._written += 1


def _check_empty(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SlamInputError("the recording folder exists and is not empty: choose a new one", folder)
