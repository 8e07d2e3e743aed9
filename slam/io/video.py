"""Monocular input without a benchmark layout: a video file, a folder of images, or a webcam.

Intrinsics come from the config (camera.fx/fy/cx/cy, dist) or a calibration.yaml in the image folder
(or beside the video file). Videos and webcams are read in order: iterate them front to back; asking
`load(i)` for an earlier frame reopens the video and skips forward (correct, but slow).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.config import Config
from slam.errors import SlamInputError
from slam.io.base import FrameData, Sequence, prefetch, read_image
from slam.io.calibration import (
    Calibration,
    Undistorter,
    as_uint8_image,
    calibration_from_config,
    check_principal_point,
    check_size,
    resolve_calibration,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
# Integer file names this long are nanosecond timestamps (EuRoC style); shorter ones are frame counters.
_NS_DIGITS = 16


class EndOfStream(SlamInputError):
    """A video or camera has no frame i: it ended (earlier than its header said) or was unplugged."""


class UnknownLengthError(SlamInputError, TypeError):
    """len() of a live stream; a TypeError too, so tools that probe len() (tqdm, list) fall back."""


@dataclass
class StreamSequence(Sequence):
    """Frames read in order from a capture; iteration stops cleanly where the stream really ends."""

    unbounded: bool = False  # a live camera: no length, timestamps from the clock

    def __len__(self) -> int:
        if self.unbounded:
            raise UnknownLengthError("a live camera has no length: iterate it or use frames(max_frames)", self.name)
        return len(self.timestamps)

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[FrameData]:
        return self.frames()

    def frames(self, max_frames: int | None = None) -> Iterator[FrameData]:
        limit = max_frames
        if not self.unbounded:
            limit = len(self) if max_frames is None else min(max_frames, len(self))
        return self._deliver(prefetch(self._until_end(limit), self.prefetch))

    def _until_end(self, limit: int | None) -> Iterator[FrameData]:
        i = 0
        while limit is None or i < limit:
            try:
                frame = self.load(i)
            except EndOfStream as exc:
                self.warnings.append(str(exc))
                return
            yield frame
            i += 1


def open_images(folder: str | Path, config: Config) -> Sequence:
    """A folder of images, sorted by name (numerically when the names are numbers)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SlamInputError("image folder not found", folder)
    _require_mono(config, folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if not files:
        raise SlamInputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder", folder)
    files, timestamps = order_and_time(files, config.camera.fps)
    calibration, _source = resolve_calibration(config.camera, folder)
    calibration = _sized(calibration, as_uint8_image(read_image(files[0]), files[0]), files[0])
    undistort = Undistorter.for_calibration(calibration)

    def load(i: int) -> FrameData:
        image = as_uint8_image(read_image(files[i]), files[i])
        return FrameData(index=i, timestamp=float(timestamps[i]), image=_prepare(image, calibration, undistort,
                                                                               files[i]), path=str(files[i]))

    return Sequence(name=folder.name, camera=calibration.camera(0.0), timestamps=timestamps, load=load,
                    prefetch=config.dataset.prefetch)


def order_and_time(files: list[Path], fps: float) -> tuple[list[Path], np.ndarray]:
    """Sort image files and give them timestamps (s).

    Names like 1341841873.273798 are seconds, integer names of 16+ digits nanoseconds; anything else
    (frame counters, words) is sorted naturally and timed by its index / fps.
    """
    stems = [p.stem for p in files]
    if all(_is_decimal(s) for s in stems) and any("." in s for s in stems):
        values = np.array([float(s) for s in stems])
    elif all(s.isdigit() and len(s) >= _NS_DIGITS for s in stems):
        values = np.array([int(s) for s in stems], dtype=np.int64) / 1e9
    else:
        ordered = sorted(files, key=_natural_key)
        return ordered, np.arange(len(ordered)) / _valid_fps(fps)
    order = np.argsort(values, kind="stable")
    return [files[i] for i in order], values[order]


def _is_decimal(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)?", text) is not None


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _valid_fps(fps: float) -> float:
    if not fps > 0:
        raise SlamInputError(f"camera.fps must be positive, got {fps}", "config")
    return fps


def open_video(path: str | Path, config: Config) -> StreamSequence:
    """A video file; timestamps are frame index / fps (the container's fps, else camera.fps)."""
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("video file not found", path)
    _require_mono(config, path)
    reader = _VideoReader(path)
    first = reader.read(0)
    calibration, _source = resolve_calibration(config.camera, path.parent)
    calibration = _sized(calibration, first, path)
    undistort = Undistorter.for_calibration(calibration)
    fps = reader.fps if reader.fps > 0 else _valid_fps(config.camera.fps)
    count = reader.frame_count
    timestamps = np.arange(max(count, 0)) / fps

    def load(i: int) -> FrameData:
        image = _prepare(reader.read(i), calibration, undistort, path)
        return FrameData(index=i, timestamp=i / fps, image=image, path=f"{path}#{i}")

    return StreamSequence(name=path.stem, camera=calibration.camera(0.0), timestamps=timestamps, load=load,
                          prefetch=config.dataset.prefetch, unbounded=count <= 0)


class _VideoReader:
    """Decodes a video in order from the prefetch thread; a backward request reopens the file."""

    def __init__(self, path: Path):
        self._path = path
        self._lock = threading.Lock()
        self._cap = self._open()
        self._next = 0
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self._path))
        if not cap.isOpened():
            raise SlamInputError("cannot open the video (not a video, or no decoder for it)", self._path)
        return cap

    def read(self, i: int) -> np.ndarray:
        with self._lock:
            if i < self._next:
                self._cap.release()
                self._cap = self._open()
                self._next = 0
            while self._next < i:
                if not self._cap.grab():
                    raise EndOfStream(f"the video ends before frame {i}", self._path)
                self._next += 1
            ok, image = self._cap.read()
            if not ok or image is None:
                raise EndOfStream(f"the video ends at frame {i}", self._path)
            self._next += 1
            return image


def open_webcam(device: str | int, config: Config) -> StreamSequence:
    """A live camera by index (0, 1, ...) or device path; timestamps come from the clock. No length."""
    _require_mono(config, f"webcam {device}")
    calibration = calibration_from_config(config.camera)
    if calibration is None:
        raise SlamInputError("a webcam needs intrinsics: set camera.fx/fy/cx/cy in the config", f"webcam {device}")
    source = int(device) if str(device).isdigit() else str(device)
    capture = cv2.VideoCapture(source)
    name = f"webcam {device}"
    if not capture.isOpened():
        raise SlamInputError("cannot open the camera (no such device, or it is busy)", name)
    ok, first = capture.read()
    if not ok or first is None:
        raise SlamInputError("the camera opened but gives no image", name)
    calibration = _sized(calibration, first, name)
    undistort = Undistorter.for_calibration(calibration)
    next_frame = _live_reader(capture, name)

    def load(i: int) -> FrameData:
        timestamp, image = next_frame()
        return FrameData(index=i, timestamp=timestamp, image=_prepare(image, calibration, undistort, name),
                         path=name)

    # Prefetch 1: a live camera should hand over fresh frames, not a queue of old ones.
    return StreamSequence(name=name, camera=calibration.camera(0.0), timestamps=np.empty(0), load=load,
                          prefetch=1, unbounded=True)


def _live_reader(capture: cv2.VideoCapture, name: str) -> Callable[[], tuple[float, np.ndarray]]:
    start = time.monotonic()
    lock = threading.Lock()

    def next_frame() -> tuple[float, np.ndarray]:
        with lock:
            ok, image = capture.read()
            stamp = time.monotonic() - start
        if not ok or image is None:
            raise EndOfStream("the camera stopped giving images", name)
        return stamp, image

    return next_frame


def _require_mono(config: Config, source: str | Path) -> None:
    if config.mode != "mono":
        raise SlamInputError(f"mode '{config.mode}' needs depth or a right camera; this input gives only mono "
                             "images (set mode: mono)", source)


def _sized(calibration: Calibration, first: np.ndarray, source: str | Path) -> Calibration:
    h, w = first.shape[:2]
    if calibration.width is None or calibration.height is None:
        calibration = calibration.with_size(w, h)
    check_size(first, calibration.width, calibration.height, source)
    check_principal_point(calibration, source)
    return calibration


def _prepare(image: np.ndarray, calibration: Calibration, undistort: Undistorter | None,
             source: str | Path) -> np.ndarray:
    check_size(image, calibration.width, calibration.height, source)
    return undistort.image(image) if undistort is not None else image
