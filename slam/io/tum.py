"""TUM RGB-D folders: rgb.txt / depth.txt listings, groundtruth.txt, intrinsics from the config or calibration.yaml.

Stereo data in this layout (our synthetic sequences) adds right.txt listing rectified right images with
the same timestamps as rgb.txt, and calibration.yaml gives the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from slam.config import Config
from slam.errors import SlamInputError
from slam.io.base import (
    MAX_MISSING_FRACTION,
    FrameData,
    Sequence,
    SkippedFrame,
    file_exists,
    first_readable,
    read_image,
)
from slam.io.calibration import (
    Calibration,
    Undistorter,
    as_uint8_image,
    check_principal_point,
    check_size,
    resolve_calibration,
)
from slam.trajectory import Trajectory, read_tum

DEFAULT_RGBD_BASELINE = 0.08  # virtual baseline (m) for RGB-D, like ORB-SLAM's bf for TUM
STEREO_TOLERANCE_S = 1e-3  # right.txt repeats rgb.txt's timestamps; allow for rounding only


@dataclass
class Listing:
    """A TUM image list: timestamps (N,) strictly increasing, and the image paths (checked to exist)."""

    path: Path
    timestamps: np.ndarray
    files: list[Path]
    skipped: list[SkippedFrame] = field(default_factory=list)  # missing files, repeated timestamps
    reordered: bool = False  # the lines were not in time order (they are sorted now)

    def __len__(self) -> int:
        return len(self.timestamps)


def read_listing(path: Path) -> Listing:
    """Parse rgb.txt / depth.txt / right.txt ('timestamp filename' lines) and check every file exists.

    A line naming a missing file, or repeating an earlier line's timestamp, is skipped (in `skipped`);
    a malformed line, or more than MAX_MISSING_FRACTION of the files missing, refuses the whole list.
    """
    entries = _listing_entries(path)
    stamps = [stamp for _, stamp, _ in entries]
    reordered = any(b < a for a, b in zip(stamps, stamps[1:]))
    entries.sort(key=lambda entry: entry[1])  # stable: lines with equal timestamps keep their order
    kept: list[tuple[int, float, Path]] = []
    skipped: list[SkippedFrame] = []
    missing: list[tuple[int, str]] = []
    for lineno, stamp, name in entries:
        image = path.parent / name
        if kept and stamp == kept[-1][1]:
            reason = f"{path.name} line {lineno} repeats the timestamp of line {kept[-1][0]}"
            skipped.append(SkippedFrame(str(image), reason, stamp))
        elif not file_exists(image):
            skipped.append(SkippedFrame(str(image), f"listed in {path.name} line {lineno} but does not exist", stamp))
            missing.append((lineno, name))
        else:
            kept.append((lineno, stamp, image))
    if len(missing) > MAX_MISSING_FRACTION * len(entries):
        lineno, name = min(missing)
        raise SlamInputError(f"{len(missing)} of {len(entries)} listed images do not exist "
                             f"(the first: line {lineno}, '{name}')", path)
    return Listing(path, np.array([stamp for _, stamp, _ in kept]), [image for _, _, image in kept], skipped,
                   reordered)


def _listing_entries(path: Path) -> list[tuple[int, float, str]]:
    """(line number, timestamp, file name) of every entry; a malformed line is an error naming it."""
    if not path.is_file():
        raise SlamInputError("image list not found (is dataset.format right?)", path)
    entries = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise SlamInputError(f"line {lineno}: expected 'timestamp filename', got {len(parts)} fields", path)
        try:
            stamp = float(parts[0])
        except ValueError:
            raise SlamInputError(f"line {lineno}: timestamp '{parts[0]}' is not a number", path) from None
        if not np.isfinite(stamp):
            raise SlamInputError(f"line {lineno}: timestamp is not finite", path)
        entries.append((lineno, stamp, parts[1]))
    if not entries:
        raise SlamInputError("no images listed", path)
    return entries


def associate(a: np.ndarray, b: np.ndarray, max_diff: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest-timestamp pairs (indices into sorted a and b) within max_diff, in time order.

    Closest pairs are taken first (as TUM's associate.py does); a pair that would cross an
    earlier one in time is dropped so both streams stay in order.
    """
    candidates = []
    lo = np.searchsorted(b, a - max_diff, side="left")
    hi = np.searchsorted(b, a + max_diff, side="right")
    for i in range(len(a)):
        for j in range(lo[i], hi[i]):
            candidates.append((abs(a[i] - b[j]), i, j))
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    pairs.sort()
    kept = []
    for i, j in pairs:
        if not kept or j > kept[-1][1]:
            kept.append((i, j))
    ia = np.array([p[0] for p in kept], dtype=int)
    ib = np.array([p[1] for p in kept], dtype=int)
    return ia, ib


def open_tum(folder: str | Path, config: Config) -> Sequence:
    """A TUM-format folder as a Sequence in config.mode (rgbd, stereo or mono)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SlamInputError("sequence folder not found", folder)
    rgb = read_listing(folder / "rgb.txt")
    calibration, source = resolve_calibration(config.camera, folder)
    calibration = _with_image_size(calibration, rgb.files)
    undistort = Undistorter.for_calibration(calibration)
    warnings: list[str] = []
    _note_order(warnings, rgb)
    mode = config.mode
    if mode == "rgbd":
        pairing = _pair_depth(folder, rgb, config, calibration, source, warnings)
    elif mode == "stereo":
        pairing = _pair_right(folder, rgb, config, calibration, source, warnings)
    else:
        pairing = _Pairing(np.arange(len(rgb)), [], 0.0)
    if len(pairing.rgb_index) == 0:
        raise SlamInputError(f"no frames left for {mode} mode after pairing the image lists", folder)
    timestamps = rgb.timestamps[pairing.rgb_index]
    files = [rgb.files[i] for i in pairing.rgb_index]
    partners = pairing.partners
    if mode in ("rgbd", "stereo"):
        _check_partners(partners, calibration, mode)
    groundtruth = read_groundtruth(folder, warnings)

    def load(i: int) -> FrameData:
        image = _read_color(files[i], calibration, undistort)
        frame = FrameData(index=i, timestamp=float(timestamps[i]), image=image, path=str(files[i]))
        if mode == "rgbd":
            frame.depth = _read_depth(partners[i], calibration, undistort, pairing.depth_scale)
        elif mode == "stereo":
            # right.txt lists rectified images: no undistortion, only a size check.
            frame.right = _read_gray(partners[i], calibration)
        return frame

    return Sequence(name=folder.name, camera=calibration.camera(pairing.baseline), timestamps=timestamps,
                    load=load, groundtruth=groundtruth, prefetch=config.dataset.prefetch,
                    warnings=warnings, skipped=rgb.skipped + pairing.skipped)


@dataclass
class _Pairing:
    rgb_index: np.ndarray  # which rgb.txt entries become frames
    partners: list[Path]  # their depth or right image
    baseline: float
    depth_scale: float = 0.0
    skipped: list[SkippedFrame] = field(default_factory=list)  # entries of the partner list left out


def _pair_depth(folder: Path, rgb: Listing, config: Config, calibration: Calibration, source: str,
                warnings: list[str]) -> _Pairing:
    if not (folder / "depth.txt").is_file():
        raise SlamInputError("rgbd mode needs depth.txt (or use mode mono)", folder / "depth.txt")
    depth = read_listing(folder / "depth.txt")
    _note_order(warnings, depth)
    max_diff = config.dataset.max_depth_diff_s
    ia, ib = associate(rgb.timestamps, depth.timestamps, max_diff)
    _note_dropped(warnings, len(rgb) - len(ia), f"rgb frames without a depth image within {max_diff} s were dropped")
    return _Pairing(ia, [depth.files[j] for j in ib], _rgbd_baseline(config, calibration, source),
                    _depth_scale(config, calibration, source), depth.skipped)


def _pair_right(folder: Path, rgb: Listing, config: Config, calibration: Calibration, source: str,
                warnings: list[str]) -> _Pairing:
    right_path = folder / "right.txt"
    if not right_path.is_file():
        raise SlamInputError("stereo mode needs right.txt (rectified right images) in the folder", folder)
    if any(calibration.dist):
        raise SlamInputError("stereo images must already be rectified: remove the distortion coefficients", source)
    right = read_listing(right_path)
    _note_order(warnings, right)
    ia, ib = associate(rgb.timestamps, right.timestamps, STEREO_TOLERANCE_S)
    _note_dropped(warnings, len(rgb) - len(ia), "rgb frames without a right image were dropped")
    return _Pairing(ia, [right.files[j] for j in ib], _stereo_baseline(config, calibration, folder),
                    skipped=right.skipped)


def read_groundtruth(folder: Path, warnings: list[str] | None = None) -> Trajectory | None:
    """groundtruth.txt if present; with `warnings`, poses with NaNs are dropped (noted there), else refused."""
    path = folder / "groundtruth.txt"
    return read_tum(path, notes=warnings) if path.is_file() else None


def _with_image_size(calibration: Calibration, images: list[Path]) -> Calibration:
    """Width/height from the first readable image when the calibration leaves them unset, else check they agree."""
    index, image = first_readable(images, read_image)
    h, w = image.shape[:2]
    if calibration.width is None or calibration.height is None:
        calibration = calibration.with_size(w, h)
    check_size(image, calibration.width, calibration.height, images[index])
    check_principal_point(calibration, images[index])
    return calibration


def _check_partners(partners: list[Path], calibration: Calibration, mode: str) -> None:
    """Depth maps / right images of another size than the colour images refuse the sequence (not each frame)."""
    index, image = first_readable(partners, read_image)
    what = "depth maps" if mode == "rgbd" else "right images"
    if mode == "rgbd" and (image.dtype != np.uint16 or image.ndim != 2):
        raise SlamInputError(f"depth maps must be single-channel 16-bit, got {image.dtype} with shape {image.shape}",
                             partners[index])
    h, w = image.shape[:2]
    if (w, h) != (calibration.width, calibration.height):
        raise SlamInputError(f"{what} are {w}x{h} but the colour images are {calibration.width}x{calibration.height}",
                             partners[index])


def _depth_scale(config: Config, calibration: Calibration, source: str) -> float:
    # A calibration.yaml describes its own data, so its depth_scale wins over the config default.
    if source != "config" and calibration.depth_scale is not None:
        return calibration.depth_scale
    if config.camera.depth_scale <= 0:
        raise SlamInputError(f"camera.depth_scale must be positive, got {config.camera.depth_scale}", "config")
    return config.camera.depth_scale


def _rgbd_baseline(config: Config, calibration: Calibration, source: str) -> float:
    # The virtual baseline: the config's, else the one a calibration.yaml in use gives, else 0.08 m.
    if config.camera.baseline is not None:
        return config.camera.baseline
    if source != "config" and calibration.baseline is not None:
        return calibration.baseline
    return DEFAULT_RGBD_BASELINE


def _stereo_baseline(config: Config, calibration: Calibration, folder: Path) -> float:
    if config.camera.baseline is not None:
        return config.camera.baseline
    if calibration.baseline is not None:
        return calibration.baseline
    raise SlamInputError("stereo mode needs a baseline: set camera.baseline or 'baseline' in calibration.yaml",
                         folder)


def _note_order(warnings: list[str], listing: Listing) -> None:
    if listing.reordered:
        warnings.append(f"{listing.path}: lines are not in time order; frames sorted by timestamp")


def _note_dropped(warnings: list[str], count: int, what: str) -> None:
    if count > 0:
        warnings.append(f"{count} {what}")


def _read_color(path: Path, calibration: Calibration, undistort: Undistorter | None) -> np.ndarray:
    image = as_uint8_image(read_image(path), path)
    check_size(image, calibration.width, calibration.height, path)
    return undistort.image(image) if undistort is not None else image


def _read_gray(path: Path, calibration: Calibration) -> np.ndarray:
    image = read_image(path, cv2.IMREAD_GRAYSCALE)
    check_size(image, calibration.width, calibration.height, path)
    return image


def _read_depth(path: Path, calibration: Calibration, undistort: Undistorter | None, scale: float) -> np.ndarray:
    raw = read_image(path)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise SlamInputError(f"depth image must be single-channel 16-bit, got {raw.dtype} with shape {raw.shape}",
                             path)
    check_size(raw, calibration.width, calibration.height, path)
    depth = raw.astype(np.float32) / np.float32(scale)
    return undistort.depth(depth) if undistort is not None else depth
