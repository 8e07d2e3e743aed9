"""What every reader yields: FrameData values from a lazy Sequence, decoded ahead by a prefetch thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slam.camera import Camera
from slam.errors import SlamInputError, SlamRuntimeError, describe
from slam.trajectory import Trajectory


@dataclass
class FrameData:
    index: int
    timestamp: float
    image: np.ndarray  # (H,W) uint8 gray or (H,W,3) uint8 BGR, undistorted / rectified
    depth: np.ndarray | None = None  # (H,W) float32 metres, 0 where unknown (RGB-D)
    right: np.ndarray | None = None  # (H,W) uint8 gray, rectified right image (stereo)
    path: str = ""  # where the image came from, for messages

    @property
    def gray(self) -> np.ndarray:
        return self.image if self.image.ndim == 2 else cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)


MAX_CONSECUTIVE_BAD_FRAMES = 30  # this many unreadable frames in a row: the sequence is unusable from there on
MAX_MISSING_FRACTION = 0.5  # more listed images missing than this: a wrong folder, not a few lost files


@dataclass(frozen=True)
class SkippedFrame:
    """A frame left out of a run: the file at fault and why (reported once, counted in run.json)."""

    path: str
    reason: str
    timestamp: float | None = None

    def message(self) -> str:
        return f"{self.path}: {self.reason}; frame skipped"


@dataclass
class Sequence:
    """A lazy sequence of frames: `load(i)` decodes frame i; iteration prefetches in a thread.

    A frame that cannot be read (SlamInputError from `load`) is skipped: it goes to `skipped` and to
    `on_skip` (called in the iterating thread), and iteration goes on; MAX_CONSECUTIVE_BAD_FRAMES in a
    row end it with a SlamInputError. Readers put frames they left out when opening into `skipped` too.
    """

    name: str
    camera: Camera
    timestamps: np.ndarray
    load: Callable[[int], FrameData]
    groundtruth: Trajectory | None = None
    prefetch: int = 8
    warnings: list[str] = field(default_factory=list)
    skipped: list[SkippedFrame] = field(default_factory=list)
    on_skip: Callable[[SkippedFrame], None] | None = None

    def __len__(self) -> int:
        return len(self.timestamps)

    def __iter__(self) -> Iterator[FrameData]:
        return self.frames()

    def frames(self, max_frames: int | None = None) -> Iterator[FrameData]:
        count = len(self) if max_frames is None else min(max_frames, len(self))
        return self._deliver(prefetch((self._load_or_skip(i) for i in range(count)), self.prefetch))

    def _load_or_skip(self, i: int) -> FrameData | SkippedFrame:
        try:
            return self.load(i)
        except SlamInputError as exc:
            return SkippedFrame(exc.path or self.name, exc.problem, float(self.timestamps[i]))

    def _deliver(self, items: Iterator[FrameData | SkippedFrame]) -> Iterator[FrameData]:
        """Frames from `items`, with skipped ones recorded and reported here, in the consumer's thread."""
        bad_run = 0
        try:
            for item in items:
                if not isinstance(item, SkippedFrame):
                    bad_run = 0
                    yield item
                    continue
                self.skipped.append(item)
                if self.on_skip is not None:
                    self.on_skip(item)
                bad_run += 1
                if bad_run >= MAX_CONSECUTIVE_BAD_FRAMES:
                    raise SlamInputError(f"{bad_run} frames in a row cannot be read (the last: {item.reason})",
                                         item.path)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # stops the prefetch thread now, not when the generator is collected


_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable[Any], depth: int = 8) -> Iterator[Any]:
    """Iterate `items` in a daemon thread, `depth` ahead; exceptions re-raise in the consumer.

    Closing the returned generator (or breaking out of the loop) stops the producer promptly.
    """
    if depth <= 0:
        try:
            yield from items
        except Exception as exc:  # noqa: BLE001 - reported as the reader's failure
            _raise_from_reader(exc)
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(buffer, item, stop):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            _put(buffer, _Failure(exc), stop)
            return
        _put(buffer, _END, stop)

    thread = threading.Thread(target=produce, name="slam-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                _raise_from_reader(item.exc)
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


def _raise_from_reader(exc: BaseException) -> None:
    """Bad input stays a SlamInputError; anything else is a failure of the reader itself (one line)."""
    if isinstance(exc, Exception) and not isinstance(exc, (SlamInputError, SlamRuntimeError)):
        raise SlamRuntimeError(f"reader thread failed: {describe(exc)}") from exc
    raise exc


def _put(buffer: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            buffer.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def file_exists(path: Path) -> bool:
    """Path.is_file() that answers False, not an exception, for names no file system can hold."""
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        return False


def first_readable(paths: list[Path], read: Callable[[Path], np.ndarray]) -> tuple[int, np.ndarray]:
    """The first of `paths` that `read` decodes, with its index: what a reader sizes its camera by.

    Broken images before it are skipped when the run reaches them; when none of the first
    MAX_CONSECUTIVE_BAD_FRAMES can be read the sequence is refused here, before the run starts.
    """
    tried = paths[:MAX_CONSECUTIVE_BAD_FRAMES]
    first_error: SlamInputError | None = None
    for i, path in enumerate(tried):
        try:
            return i, read(path)
        except SlamInputError as exc:
            first_error = first_error or exc
    if first_error is None:
        raise SlamInputError("no images to read")
    if len(tried) == 1:
        raise first_error
    raise SlamInputError(f"none of the first {len(tried)} images can be read ({first_error.problem})",
                         first_error.path)


def read_image(path: str | Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """cv2.imread with a one-line error naming the file when it is missing or cannot be decoded."""
    path = Path(path)
    try:
        if not path.is_file():
            raise SlamInputError("image file not found", path)
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:  # unreadable (permissions, I/O error, a name too long)
        raise SlamInputError(f"cannot read image: {exc.strerror or exc}", path) from None
    if data.size == 0:
        raise SlamInputError("cannot decode image: empty file", path)
    if path.suffix.lower() == ".png":
        # libpng prints its own complaint on stderr before OpenCV gives up: check the framing first.
        problem = _png_problem(data)
        if problem:
            raise SlamInputError(f"cannot decode image: {problem}", path)
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error:  # e.g. a header claiming a size beyond OpenCV's limits
        image = None
    if image is None or image.size == 0:
        raise SlamInputError("cannot decode image (corrupt or not an image)", path)
    return image


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def _png_problem(data: np.ndarray) -> str:
    """Why bytes cannot be a complete PNG (signature, first IHDR chunk, final IEND chunk), or ''."""
    head = data[:16].tobytes()
    if not head.startswith(_PNG_SIGNATURE):
        return "not a PNG file (bad signature)"
    if head[12:16] != b"IHDR":
        return "first chunk is not IHDR"
    if data[-8:].tobytes() != _PNG_END:
        return "truncated (no IEND chunk at the end)"
    return ""
