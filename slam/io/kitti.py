"""KITTI odometry: `sequences/NN` with image_0 (left), image_1 (right), calib.txt, times.txt; poses/NN.txt.

The images are already rectified; P0 gives the left camera's K and P1 the stereo baseline.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from slam.camera import Camera
from slam.config import Config
from slam.errors import SlamInputError
from slam.io.base import MAX_MISSING_FRACTION, FrameData, Sequence, SkippedFrame, first_readable, read_image
from slam.io.calibration import check_principal_point, check_size
from slam.trajectory import Trajectory, read_kitti_poses


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """calib.txt as {name: 3x4 projection matrix} for the P0..P3 lines (other lines, like Tr, are skipped)."""
    if not path.is_file():
        raise SlamInputError("calib.txt not found (is dataset.format right?)", path)
    matrices: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep:
            raise SlamInputError(f"line {lineno}: expected 'NAME: values'", path)
        if not (len(name) == 2 and name[0] == "P" and name[1].isdigit()):
            continue
        parts = rest.split()
        if len(parts) != 12:
            raise SlamInputError(f"line {lineno}: {name} has {len(parts)} values, expected 12", path)
        try:
            values = np.array([float(p) for p in parts])
        except ValueError:
            raise SlamInputError(f"line {lineno}: {name} has a value that is not a number", path) from None
        if not np.all(np.isfinite(values)):
            raise SlamInputError(f"line {lineno}: {name} has a NaN or infinite value", path)
        matrices[name] = values.reshape(3, 4)
    if "P0" not in matrices:
        raise SlamInputError("no P0 line (left camera projection matrix)", path)
    if matrices["P0"][0, 0] <= 0 or matrices["P0"][1, 1] <= 0:
        raise SlamInputError("P0 has a non-positive focal length", path)
    return matrices


def stereo_baseline(calib: dict[str, np.ndarray], path: Path) -> float:
    """Baseline (m) from P1: the right camera sits at -P1[0,3]/fx along x (relative to P0's offset)."""
    if "P1" not in calib:
        raise SlamInputError("stereo mode needs a P1 line (right camera projection matrix)", path)
    p0, p1 = calib["P0"], calib["P1"]
    if not p1[0, 0] > 0:
        raise SlamInputError("P1 has a non-positive focal length", path)
    baseline = -(float(p1[0, 3]) - float(p0[0, 3])) / float(p1[0, 0])  # Python floats: overflow gives inf, quietly
    if not 0 < baseline < math.inf:
        raise SlamInputError(f"P1 gives a non-positive baseline ({baseline:.4f} m)", path)
    return float(baseline)


def read_times(path: Path) -> np.ndarray:
    if not path.is_file():
        raise SlamInputError("times.txt not found", path)
    stamps = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            stamps.append(float(line))
        except ValueError:
            raise SlamInputError(f"line {lineno}: '{line.strip()}' is not a number", path) from None
    if not stamps:
        raise SlamInputError("no timestamps", path)
    times = np.asarray(stamps)
    if not np.all(np.isfinite(times)):
        raise SlamInputError("NaN or infinite timestamp", path)
    return times


def poses_path(sequence_dir: Path) -> Path:
    """KITTI keeps poses/NN.txt beside sequences/: two levels up from sequences/NN."""
    return sequence_dir.parent.parent / "poses" / f"{sequence_dir.name}.txt"


def read_groundtruth(sequence_dir: Path, timestamps: np.ndarray | None = None,
                     notes: list[str] | None = None) -> Trajectory | None:
    """Poses of the left camera, or None when the sequence has no published ground truth (11-21).

    With `notes`, poses with NaNs are dropped (and noted there) rather than refusing the file.
    """
    path = poses_path(sequence_dir)
    if not path.is_file():
        return None
    if timestamps is None:
        timestamps = read_times(sequence_dir / "times.txt")
    return read_kitti_poses(path, timestamps, notes)


def open_kitti(folder: str | Path, config: Config) -> Sequence:
    """A KITTI odometry sequence; frames with a missing image or a timestamp not after the previous are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SlamInputError("sequence folder not found", folder)
    if config.mode == "rgbd":
        raise SlamInputError("KITTI has no depth images: use mode mono or stereo", folder)
    calib_path = folder / "calib.txt"
    calib = read_calib(calib_path)
    times = read_times(folder / "times.txt")
    stereo = config.mode == "stereo"
    cameras = ["image_0", "image_1"] if stereo else ["image_0"]
    kept, skipped = _usable_frames(folder, times, cameras)
    left = [folder / "image_0" / f"{i:06d}.png" for i in kept]
    right = [folder / "image_1" / f"{i:06d}.png" for i in kept] if stereo else []
    baseline = stereo_baseline(calib, calib_path) if stereo else 0.0
    _, first = first_readable(left, _gray)
    height, width = first.shape
    p0 = calib["P0"]
    camera = Camera(float(p0[0, 0]), float(p0[1, 1]), float(p0[0, 2]), float(p0[1, 2]), width, height, baseline)
    check_principal_point(camera, calib_path)
    if stereo:
        index, first_right = first_readable(right, _gray)
        check_size(first_right, width, height, right[index])
    timestamps = times[kept]
    warnings: list[str] = []
    if config.camera.fx is not None:
        warnings.append("camera.fx/fy/cx/cy in the config are ignored: KITTI intrinsics come from calib.txt")

    def load(i: int) -> FrameData:
        image = _read_gray(left[i], width, height)
        frame = FrameData(index=i, timestamp=float(timestamps[i]), image=image, path=str(left[i]))
        if stereo:
            frame.right = _read_gray(right[i], width, height)
        return frame

    return Sequence(name=folder.name, camera=camera, timestamps=timestamps, load=load,
                    groundtruth=read_groundtruth(folder, times, warnings), prefetch=config.dataset.prefetch,
                    warnings=warnings, skipped=skipped)


def _usable_frames(folder: Path, times: np.ndarray, cameras: list[str]) -> tuple[np.ndarray, list[SkippedFrame]]:
    """Frame numbers with every camera's image present and a timestamp after the previous kept frame's."""
    for name in cameras:
        if not (folder / name).is_dir():
            raise SlamInputError("image folder not found", folder / name)
    kept: list[int] = []
    skipped: list[SkippedFrame] = []
    missing = 0
    for i, stamp in enumerate(times.tolist()):
        absent = [p for p in (folder / name / f"{i:06d}.png" for name in cameras) if not p.is_file()]
        if absent:
            skipped.append(SkippedFrame(str(absent[0]), f"image missing (times.txt lists {len(times)} frames)", stamp))
            missing += 1
        elif kept and not stamp > times[kept[-1]]:
            reason = f"timestamp {stamp:g} in times.txt is not after frame {kept[-1]}'s ({times[kept[-1]]:g})"
            skipped.append(SkippedFrame(str(folder / cameras[0] / f"{i:06d}.png"), reason, stamp))
        else:
            kept.append(i)
    if missing > MAX_MISSING_FRACTION * len(times):
        raise SlamInputError(f"{missing} of the {len(times)} frames times.txt lists have no image", folder)
    return np.array(kept, dtype=np.int64), skipped


def _gray(path: Path) -> np.ndarray:
    return read_image(path, cv2.IMREAD_GRAYSCALE)


def _read_gray(path: Path, width: int, height: int) -> np.ndarray:
    image = read_image(path, cv2.IMREAD_GRAYSCALE)
    check_size(image, width, height, path)
    return image
