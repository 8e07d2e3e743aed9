"""A capture thread over any OpenCV source that keeps only the newest frame.

Tracking asks for a frame when it is ready for one and gets the newest the source has given; frames that
arrived in between are dropped (and counted), so latency stays bounded when tracking is slower than the
camera. A video file is played as a camera: frame n is published at its time n / fps.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.errors import SlamInputError
from slam.io.video import EndOfStream

DEFAULT_STALL_S = 10.0  # no frame for this long: the source is treated as gone


@dataclass(frozen=True)
class CaptureSource:
    """What to open: a camera index, a stream URL or a video file."""

    kind: str  # "camera" | "url" | "video"
    target: str

    @property
    def name(self) -> str:
        return f"camera {self.target}" if self.kind == "camera" else self.target

    @property
    def is_file(self) -> bool:
        return self.kind == "video"

    @staticmethod
    def camera(index: int | str) -> CaptureSource:
        if not str(index).isdigit():
            raise SlamInputError(f"a camera index is a number (0, 1, ...), got '{index}'", "--camera")
        return CaptureSource("camera", str(index))

    @staticmethod
    def url(url: str) -> CaptureSource:
        return CaptureSource("url", url)

    @staticmethod
    def video(path: str | Path) -> CaptureSource:
        return CaptureSource("video", str(path))


@dataclass(frozen=True)
class CapturedFrame:
    number: int  # how many frames the source gave before this one
    timestamp: float  # stream time (s): position in a video file, wall clock for cameras and streams
    captured_at: float  # time.perf_counter() when it arrived, for latency
    image: np.ndarray  # as decoded (BGR or gray), not yet undistorted


@dataclass(frozen=True)
class CaptureCounts:
    captured: int  # frames the source gave
    delivered: int  # frames handed to the consumer
    dropped: int  # frames replaced by a newer one before the consumer asked


def open_capture(source: CaptureSource) -> cv2.VideoCapture:
    """Open `source`; one that cannot be opened is a one-line SlamInputError naming it."""
    if source.is_file and not Path(source.target).is_file():
        raise SlamInputError("video file not found", source.name)
    target: int | str = int(source.target) if source.kind == "camera" else source.target
    with _quiet_native_stderr():
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise SlamInputError(_cannot_open(source), source.name)
    if source.kind == "camera":
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a hint: fewer stale frames queued in the driver
    return capture


def _cannot_open(source: CaptureSource) -> str:
    return {
        "camera": "cannot open the camera (no such device, or it is busy)",
        "url": "cannot open the stream (unreachable, or no decoder for it)",
        "video": "cannot open the video (not a video, or no decoder for it)",
    }[source.kind]


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what OpenCV's backends and FFmpeg print on stderr while probing a source.

    They write several lines per failed backend straight to file descriptor 2; the user should see only
    our one-line error. Python-level stderr is untouched.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


class FrameCapture:
    """Reads a source in a daemon thread (started by the first `next()`), keeping one frame: the newest.

    `pace` plays a video file at its frame rate (`fps` overrides the file's), as a camera would give it;
    without it the file is read as fast as it decodes.
    """

    def __init__(
        self, source: CaptureSource, pace: bool = True, fps: float | None = None, stall_s: float = DEFAULT_STALL_S
    ):
        if fps is not None and not fps > 0:
            raise SlamInputError(f"a frame rate must be positive, got {fps}", source.name)
        self.source = source
        self._capture = open_capture(source)
        self.width, self.height = self._probe_size()
        file_fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if fps is not None else (file_fps if file_fps > 0 else 30.0)
        self._pace = pace and source.is_file
        self._stall_s = stall_s
        self._changed = threading.Condition()
        self._slot: CapturedFrame | None = None
        self._end_reason = ""
        self._counts = [0, 0, 0]  # captured, delivered, dropped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _probe_size(self) -> tuple[int, int]:
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if width <= 0 or height <= 0:
            raise SlamInputError("the source does not report its image size (no video stream?)", self.source.name)
        return width, height

    # ---- consumer side ----------------------------------------------------------------------------------
    def next(self) -> CapturedFrame:
        """The newest frame not yet handed out (waiting for one); EndOfStream when the source has ended."""
        self._start()
        with self._changed:
            deadline = time.monotonic() + self._stall_s
            while self._slot is None and not self._end_reason:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._end_reason = f"no image for {self._stall_s:g} s: the source stopped"
                    break
                self._changed.wait(min(remaining, 0.5))
            if self._slot is None:
                raise EndOfStream(self._end_reason, self.source.name)
            frame, self._slot = self._slot, None
            self._counts[1] += 1
            return frame

    def counts(self) -> CaptureCounts:
        with self._changed:
            return CaptureCounts(*self._counts)

    @property
    def end_reason(self) -> str:
        """Why the source ended ('' while it runs, or when the consumer stopped first)."""
        with self._changed:
            return self._end_reason

    def close(self) -> None:
        """Stop the thread and release the source (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)
            if thread.is_alive():
                return  # a read is stuck in the driver: releasing under it could crash; the thread is a daemon
        self._capture.release()

    def __enter__(self) -> FrameCapture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- producer side ----------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="slam-capture", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        start_clock = time.perf_counter()
        number = 0
        reason = "the source stopped giving images"
        try:
            while not self._stop.is_set():
                ok, image = self._capture.read()
                if not ok or image is None:
                    reason = "the video ended" if self.source.is_file else reason
                    break
                if self._pace and self._stop.wait(max(0.0, start_clock + number / self.fps - time.perf_counter())):
                    break
                stamp = number / self.fps if self.source.is_file else time.time()
                self._publish(CapturedFrame(number, stamp, time.perf_counter(), image))
                number += 1
        except cv2.error as exc:
            reason = f"reading failed: {str(exc).strip().splitlines()[-1]}"
        finally:
            self._finish(reason if number else "the source opened but gave no image")

    def _publish(self, frame: CapturedFrame) -> None:
        with self._changed:
            if self._slot is not None:
                self._counts[2] += 1
            self._slot = frame
            self._counts[0] += 1
            self._changed.notify_all()

    def _finish(self, reason: str) -> None:
        with self._changed:
            self._end_reason = reason
            self._changed.notify_all()
