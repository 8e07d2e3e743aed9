"""Dataset readers: each returns a lazy Sequence of undistorted / rectified frames for a pinhole camera."""

from __future__ import annotations

from pathlib import Path

from slam.config import Config
from slam.errors import SlamInputError
from slam.io.base import FrameData, Sequence
from slam.io.euroc import open_euroc
from slam.io.groundtruth import load_groundtruth
from slam.io.kitti import open_kitti
from slam.io.tum import open_tum
from slam.io.video import open_images, open_video, open_webcam

__all__ = ["FrameData", "Sequence", "load_groundtruth", "open_sequence"]

_READERS = {
    "tum": open_tum,
    "kitti": open_kitti,
    "euroc": open_euroc,
    "video": open_video,
    "images": open_images,
}


def open_sequence(data: str | Path, config: Config) -> Sequence:
    """Open `data` as config.dataset.format in config.mode; a mode the data cannot give is a SlamInputError.

    For format 'webcam', `data` is the device index (or a device path / stream URL).
    """
    fmt = config.dataset.format
    if fmt == "webcam":
        return open_webcam(str(data), config)
    reader = _READERS.get(fmt)
    if reader is None:
        raise SlamInputError(f"unknown dataset.format '{fmt}' (expected webcam or {', '.join(_READERS)})", "config")
    return reader(Path(data), config)
