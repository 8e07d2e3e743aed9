"""Pinhole calibration files (calibration.yaml) and the undistortion every reader applies before the core.

The YAML holds: fx, fy, cx, cy, width, height (required); dist (OpenCV order k1 k2 p1 p2 [k3]),
baseline (metres) and depth_scale (raw depth units per metre) (optional).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from slam.camera import Camera
from slam.config import CameraConfig
from slam.errors import SlamInputError
from slam.trajectory import write_text_atomic
from slam.yamlutil import parse_yaml

CALIBRATION_FILE = "calibration.yaml"
_REQUIRED = ("fx", "fy", "cx", "cy", "width", "height")
_OPTIONAL = ("dist", "baseline", "depth_scale")
# Lengths cv2.undistort accepts: none, k1 k2 p1 p2, + k3, + k4 k5 k6 (rational model).
_DIST_LENGTHS = (0, 4, 5, 8)


@dataclass(frozen=True)
class Calibration:
    """Intrinsics of the (possibly distorted) images on disk; width/height None = take them from an image."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int | None = None
    height: int | None = None
    dist: tuple[float, ...] = ()
    baseline: float | None = None
    depth_scale: float | None = None

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def camera(self, baseline: float = 0.0) -> Camera:
        """The pinhole camera of the undistorted images (undistortion keeps K, see Undistorter)."""
        if self.width is None or self.height is None:
            raise ValueError("image size unknown: call with_size() first")
        return Camera(self.fx, self.fy, self.cx, self.cy, self.width, self.height, baseline)

    def with_size(self, width: int, height: int) -> Calibration:
        return Calibration(self.fx, self.fy, self.cx, self.cy, width, height, self.dist, self.baseline,
                           self.depth_scale)


def read_calibration(path: str | Path) -> Calibration:
    """Read calibration.yaml; unknown or missing keys and wrong types give a one-line SlamInputError."""
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("calibration file not found", path)
    data = parse_yaml(path.read_text(errors="replace"), path)
    if not isinstance(data, dict):
        raise SlamInputError("a calibration file must be a mapping of keys (fx, fy, cx, cy, width, height)", path)
    return _calibration_from_mapping(data, path)


def write_calibration(path: str | Path, calibration: Calibration) -> None:
    """Write calibration.yaml atomically (width and height must be known)."""
    if calibration.width is None or calibration.height is None:
        raise ValueError("a calibration file needs width and height")
    data: dict[str, Any] = {
        "fx": float(calibration.fx), "fy": float(calibration.fy),
        "cx": float(calibration.cx), "cy": float(calibration.cy),
        "width": int(calibration.width), "height": int(calibration.height),
        "dist": [float(d) for d in calibration.dist],
    }
    if calibration.baseline is not None:
        data["baseline"] = float(calibration.baseline)
    if calibration.depth_scale is not None:
        data["depth_scale"] = float(calibration.depth_scale)
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def _calibration_from_mapping(data: dict, path: Path) -> Calibration:
    for key in data:
        if key not in _REQUIRED and key not in _OPTIONAL:
            raise SlamInputError(f"unknown key '{key}' (expected {', '.join(_REQUIRED + _OPTIONAL)})", path)
    for key in _REQUIRED:
        if key not in data:
            raise SlamInputError(f"missing key '{key}'", path)
    fx, fy, cx, cy = (_number(data, key, path) for key in ("fx", "fy", "cx", "cy"))
    width, height = (_positive_int(data, key, path) for key in ("width", "height"))
    if fx <= 0 or fy <= 0:
        raise SlamInputError("key 'fx'/'fy': focal lengths must be positive", path)
    dist = _dist(data.get("dist", []), path)
    baseline = _optional_positive(data, "baseline", path)
    depth_scale = _optional_positive(data, "depth_scale", path)
    return Calibration(fx, fy, cx, cy, width, height, dist, baseline, depth_scale)


def _number(data: dict, key: str, path: Path) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(_as_float(value)):
        raise SlamInputError(f"key '{key}' must be a finite number, got {_short(value)}", path)
    return float(value)


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _positive_int(data: dict, key: str, path: Path) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SlamInputError(f"key '{key}' must be a positive integer, got {_short(value)}", path)
    return value


def _optional_positive(data: dict, key: str, path: Path) -> float | None:
    if data.get(key) is None:
        return None
    value = _number(data, key, path)
    if value <= 0:
        raise SlamInputError(f"key '{key}' must be positive, got {_short(value)}", path)
    return value


def _dist(value: Any, path: Path) -> tuple[float, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise SlamInputError(f"key 'dist' must be a list (k1 k2 p1 p2 [k3]), got {_short(value)}", path)
    values = {f"dist[{i}]": v for i, v in enumerate(value)}
    dist = tuple(_number(values, key, path) for key in values)
    if len(dist) not in _DIST_LENGTHS:
        raise SlamInputError(f"key 'dist' has {len(dist)} values, expected 4 (k1 k2 p1 p2) or 5 (+ k3)", path)
    return dist


def calibration_from_config(camera: CameraConfig, source: str = "config") -> Calibration | None:
    """The config's intrinsics, or None when camera.fx is unset; a partial set is an error naming the key."""
    if camera.fx is None:
        return None
    for key in ("fy", "cx", "cy"):
        if getattr(camera, key) is None:
            raise SlamInputError(f"camera.fx is set but camera.{key} is not", source)
    if len(camera.dist) not in _DIST_LENGTHS:
        raise SlamInputError(f"camera.dist has {len(camera.dist)} values, expected 4 (k1 k2 p1 p2) or 5 (+ k3)",
                             source)
    if camera.fx <= 0 or camera.fy <= 0:
        raise SlamInputError("camera.fx and camera.fy must be positive", source)
    return Calibration(camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height, tuple(camera.dist))


def resolve_calibration(camera: CameraConfig, folder: Path) -> tuple[Calibration, str]:
    """Intrinsics from the config, else from calibration.yaml in `folder`; returns (calibration, where from)."""
    from_config = calibration_from_config(camera)
    if from_config is not None:
        return from_config, "config"
    path = folder / CALIBRATION_FILE
    if path.is_file():
        return read_calibration(path), str(path)
    raise SlamInputError(
        f"no camera intrinsics: set camera.fx/fy/cx/cy in the config or add {CALIBRATION_FILE} to the folder", folder
    )


class Undistorter:
    """Remap tables computed once; images and depth maps go through the same pixel mapping.

    The undistorted images keep the calibration's K (as ORB-SLAM does for TUM), so the core's
    pinhole camera uses the configured fx, fy, cx, cy unchanged.
    """

    def __init__(self, map1: np.ndarray, map2: np.ndarray):
        self._map1 = map1
        self._map2 = map2

    @classmethod
    def for_calibration(cls, calibration: Calibration) -> Undistorter | None:
        """None when there is no distortion to remove (all coefficients zero or absent)."""
        if not any(calibration.dist):
            return None
        size = (calibration.width, calibration.height)
        K = calibration.K
        map1, map2 = cv2.initUndistortRectifyMap(K, np.array(calibration.dist), None, K, size, cv2.CV_16SC2)
        return cls(map1, map2)

    def image(self, image: np.ndarray) -> np.ndarray:
        return cv2.remap(image, self._map1, self._map2, cv2.INTER_LINEAR)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        # Nearest neighbour: interpolating across a depth edge invents surfaces that are not there.
        return cv2.remap(depth, self._map1, self._map2, cv2.INTER_NEAREST)


def check_principal_point(camera: Calibration | Camera, path: str | Path) -> None:
    """A principal point outside the image means intrinsics for another image size: refuse them."""
    cx, cy, w, h = camera.cx, camera.cy, camera.width, camera.height
    if not (0 <= cx <= w and 0 <= cy <= h):
        raise SlamInputError(f"the calibration contradicts the image size: principal point ({cx:g}, {cy:g}) lies "
                             f"outside the {w}x{h} image", path)


def check_size(image: np.ndarray, width: int, height: int, path: str | Path) -> None:
    """Refuse an image whose size differs from the calibration's (a remap would silently crop it)."""
    h, w = image.shape[:2]
    if (w, h) != (width, height):
        raise SlamInputError(f"image is {w}x{h}, expected {width}x{height} like the calibration", path)


def as_uint8_image(image: np.ndarray, path: str | Path) -> np.ndarray:
    """8-bit gray or BGR as the core expects; alpha dropped, other bit depths refused."""
    if image.dtype != np.uint8:
        raise SlamInputError(f"expected an 8-bit image, got {image.dtype}", path)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
