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
from slam.errors import SlamInputError
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


@dataclass
class Sequence:
    """A lazy sequence of frames: `load(i)` decodes frame i; iteration prefetches in a thread."""

    name: str
    camera: Camera
    timestamps: np.ndarray
    load: Callable[[int], FrameData]
    groundtruth: Trajectory | None = None
    prefetch: int = 8
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.timestamps)

    def __iter__(self) -> Iterator[FrameData]:
        return prefetch((self.load(i) for i in range(len(self))), self.prefetch)

    def frames(self, max_frames: int | None = None) -> Iterator[FrameData]:
        count = len(self) if max_frames is None else min(max_frames, len(self))
        return prefetch((self.load(i) for i in range(count)), self.prefetch)


_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable[Any], depth: int = 8) -> Iterator[Any]:
    """Iterate `items` in a daemon thread, `depth` ahead; exceptions re-raise in the consumer.

    Closing the returned generator (or breaking out of the loop) stops the producer promptly.
    """
    if depth <= 0:
        yield from items
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
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)


def _put(buffer: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            buffer.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def read_image(path: str | Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """cv2.imread with a one-line error naming the file when it is missing or cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("image file not found", path)
    data = np.fromfile(path, dtype=np.uint8)
    if path.suffix.lower() == ".png":
        # libpng prints its own complaint on stderr before OpenCV gives up: check the framing first.
        problem = _png_problem(data)
        if problem:
            raise SlamInputError(f"cannot decode image: {problem}", path)
    image = cv2.imdecode(data, flags) if data.size else None
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
