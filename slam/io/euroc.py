"""EuRoC MAV (ASL folder format): mav0/cam0, mav0/cam1 (data.csv + sensor.yaml), imu0, ground truth.

Stereo frames are rectified with cv2.stereoRectify (alpha 0, same resolution); the camera is the
rectified left one, whose frame differs from cam0 by the rotation R1. Monocular frames are cam0
undistorted with its own K. Ground truth is converted from the body (IMU) frame to that camera frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.camera import Camera
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
from slam.io.calibration import check_size
from slam.trajectory import Trajectory, quat_to_rot, read_tum
from slam.yamlutil import parse_yaml

BODY_GT_TUM = "groundtruth_body_tum.txt"  # beside mav0/: TUM format, body frame
STATE_GT_CSV = Path("state_groundtruth_estimate0") / "data.csv"
MAX_SIDE = 16384  # pixels: a larger resolution in sensor.yaml is a typo, not a camera


@dataclass(frozen=True)
class CameraSensor:
    """One EuRoC camera as sensor.yaml describes it (distorted images, radial-tangential model)."""

    K: np.ndarray
    dist: np.ndarray  # k1 k2 p1 p2
    T_BS: np.ndarray  # 4x4 sensor-to-body
    width: int
    height: int


@dataclass(frozen=True)
class ImuData:
    timestamps: np.ndarray  # (N,) seconds
    gyro: np.ndarray  # (N,3) rad/s, sensor frame
    accel: np.ndarray  # (N,3) m/s^2, sensor frame


def mav0_dir(root: str | Path) -> Path:
    """The mav0 folder of a EuRoC sequence, given the folder that holds it (or mav0 itself)."""
    root = Path(root)
    if not root.is_dir():
        raise SlamInputError("sequence folder not found", root)
    if (root / "mav0").is_dir():
        return root / "mav0"
    if root.name == "mav0":
        return root
    raise SlamInputError("no mav0/ folder: not a EuRoC sequence (is dataset.format right?)", root)


def read_sensor_yaml(path: Path) -> CameraSensor:
    """Parse a camera sensor.yaml (its '%YAML:1.0' first line is OpenCV's, which PyYAML refuses)."""
    if not path.is_file():
        raise SlamInputError("sensor.yaml not found", path)
    lines = path.read_text(errors="replace").splitlines()
    first_line = 1
    if lines and lines[0].startswith("%YAML"):
        lines, first_line = lines[1:], 2
    data = parse_yaml("\n".join(lines), path, first_line)
    if not isinstance(data, dict):
        raise SlamInputError("expected a mapping of sensor keys", path)
    model = data.get("camera_model", "pinhole")
    if model != "pinhole":
        raise SlamInputError(f"camera_model '{model}' is not supported (only pinhole)", path)
    dist_model = data.get("distortion_model", "radial-tangential")
    if dist_model not in ("radial-tangential", "radtan"):
        raise SlamInputError(f"distortion_model '{dist_model}' is not supported (only radial-tangential)", path)
    fu, fv, cu, cv = _numbers(data, "intrinsics", 4, path)
    dist = _numbers(data, "distortion_coefficients", 4, path)
    width, height = _numbers(data, "resolution", 2, path)
    if not (fu > 0 and fv > 0 and 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or width != int(width) \
            or height != int(height):
        raise SlamInputError("intrinsics or resolution out of range", path)
    if not (0 <= cu <= width and 0 <= cv <= height):
        raise SlamInputError(f"the principal point ({cu:g}, {cv:g}) lies outside the {width:g}x{height:g} resolution",
                             path)
    t_bs = data.get("T_BS")
    if not isinstance(t_bs, dict):
        raise SlamInputError("missing key 'T_BS' (with cols, rows, data)", path)
    T_BS = np.array(_numbers(t_bs, "data", 16, path, key_name="T_BS.data")).reshape(4, 4)
    if not np.allclose(T_BS[3], [0, 0, 0, 1]) or abs(np.linalg.det(T_BS[:3, :3]) - 1) > 1e-3:
        raise SlamInputError("T_BS is not a rigid transform", path)
    K = np.array([[fu, 0.0, cu], [0.0, fv, cv], [0.0, 0.0, 1.0]])
    return CameraSensor(K, np.array(dist), T_BS, int(width), int(height))


def _numbers(data: dict, key: str, count: int, path: Path, key_name: str | None = None) -> list[float]:
    name = key_name or key
    value = data.get(key)
    if value is None:
        raise SlamInputError(f"missing key '{name}'", path)
    if not isinstance(value, list) or len(value) != count:
        raise SlamInputError(f"key '{name}' must be a list of {count} numbers", path)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v) for v in value):
        raise SlamInputError(f"key '{name}' has a value that is not a finite number", path)
    return [float(v) for v in value]


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        return False


def read_camera_csv(cam_dir: Path) -> tuple[np.ndarray, list[Path], list[SkippedFrame]]:
    """data.csv of a camera: timestamps (ns, int64, strictly increasing), image paths (checked to exist) and
    the entries left out: images that do not exist and repeated timestamps (more than half missing refuses)."""
    path = cam_dir / "data.csv"
    rows = _csv_rows(path, min_fields=2)
    if not rows:
        raise SlamInputError("no images listed", path)
    entries = sorted(((_int_field(fields[0], lineno, path), lineno, fields[1]) for lineno, fields in rows),
                     key=lambda entry: entry[0])
    stamps: list[int] = []
    files: list[Path] = []
    skipped: list[SkippedFrame] = []
    missing: list[tuple[int, str]] = []
    for stamp, lineno, name in entries:
        image = cam_dir / "data" / name
        if stamps and stamp == stamps[-1]:
            skipped.append(SkippedFrame(str(image), f"data.csv line {lineno} repeats a timestamp", stamp * 1e-9))
        elif not file_exists(image):
            skipped.append(SkippedFrame(str(image), f"listed in data.csv line {lineno} but is missing", stamp * 1e-9))
            missing.append((lineno, name))
        else:
            stamps.append(stamp)
            files.append(image)
    if len(missing) > MAX_MISSING_FRACTION * len(entries):
        lineno, name = min(missing)
        raise SlamInputError(f"{len(missing)} of {len(entries)} listed images do not exist (the first: line {lineno}, "
                             f"'{name}')", path)
    return np.array(stamps, dtype=np.int64), files, skipped


def _csv_rows(path: Path, min_fields: int) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise SlamInputError("data.csv not found", path)
    rows = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < min_fields:
            raise SlamInputError(f"line {lineno}: expected at least {min_fields} comma-separated fields", path)
        rows.append((lineno, fields))
    return rows


def _int_field(text: str, lineno: int, path: Path) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SlamInputError(f"line {lineno}: timestamp '{text.strip()[:40]}' is not an integer (ns)", path) from None
    if not 0 <= value < 2**63:
        raise SlamInputError(f"line {lineno}: timestamp {text.strip()[:40]} is out of range (ns since 1970)", path)
    return value


def _float_fields(fields: list[str], lineno: int, path: Path) -> list[float]:
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise SlamInputError(f"line {lineno}: a value is not a number", path) from None
    if not all(np.isfinite(values)):
        raise SlamInputError(f"line {lineno}: NaN or infinite value", path)
    return values


def read_imu(root: str | Path) -> ImuData:
    """imu0/data.csv: timestamps (s), gyro (rad/s) and accel (m/s^2), in the IMU (body) frame."""
    path = mav0_dir(root) / "imu0" / "data.csv"
    stamps, values, lines = _numeric_table(path, 6)
    _refuse_non_finite(values, lines, path)
    return ImuData(stamps / 1e9, values[:, :3], values[:, 3:])


def _numeric_table(path: Path, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A csv of 'ns, v1..v_count' rows (extra columns ignored) as (int64 ns, (N,count) floats, line numbers),
    sorted by time. Values may be NaN or infinite: the caller decides what such a row means."""
    rows = _csv_rows(path, min_fields=count + 1)
    if not rows:
        raise SlamInputError("no data rows", path)
    try:
        table = np.array([fields[: count + 1] for _, fields in rows])
        stamps = table[:, 0].astype(np.int64)
        values = table[:, 1:].astype(float)
        if stamps.min() < 0:
            raise ValueError("negative timestamp")
    except (ValueError, OverflowError):
        # Vectorised parsing failed: find the offending line for the message.
        for lineno, fields in rows:
            _int_field(fields[0], lineno, path)
            _float_fields(fields[1 : count + 1], lineno, path)
        raise SlamInputError("a value is not a number", path) from None
    lines = np.array([lineno for lineno, _ in rows])
    order = np.argsort(stamps, kind="stable")
    return stamps[order], values[order], lines[order]


def _refuse_non_finite(values: np.ndarray, lines: np.ndarray, path: Path) -> None:
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
        raise SlamInputError(f"line {lines[bad].min()}: NaN or infinite value", path)


def read_body_groundtruth(root: str | Path, notes: list[str] | None = None) -> Trajectory | None:
    """Body (IMU) poses T_w_b: mav0/state_groundtruth_estimate0/data.csv, else groundtruth_body_tum.txt.

    With `notes`, poses with NaNs (or repeated timestamps) are dropped and noted there instead of refused.
    """
    mav0 = mav0_dir(root)
    csv_path = mav0 / STATE_GT_CSV
    if csv_path.is_file():
        return read_state_csv(csv_path, notes)
    tum_path = mav0.parent / BODY_GT_TUM
    if tum_path.is_file():
        return read_tum(tum_path, notes)
    return None


def read_state_csv(path: Path, notes: list[str] | None = None) -> Trajectory:
    """state_groundtruth_estimate0/data.csv as body poses (see read_body_groundtruth for `notes`)."""
    stamps, values, lines = _numeric_table(path, 7)  # ns, p xyz, q wxyz (velocity and biases follow)
    quat_wxyz = values[:, 3:7]
    bad = ~np.all(np.isfinite(values), axis=1)
    bad |= ~bad & (np.max(np.abs(np.nan_to_num(quat_wxyz)), axis=1) < 1e-6)  # zero quaternion
    if notes is None:
        _refuse_non_finite(values, lines, path)
        if bad.any():
            raise SlamInputError(f"line {lines[bad].min()}: zero quaternion", path)
    else:
        bad[1:] |= stamps[1:] == stamps[:-1]
        if bad.all():
            raise SlamInputError("no usable poses: every row has a NaN, infinite value or zero quaternion", path)
        if bad.any():
            notes.append(f"{path}: {int(bad.sum())} of {len(bad)} poses dropped (NaN, infinite, zero quaternion or "
                         f"repeated timestamp; first at line {lines[bad].min()})")
        stamps, values, quat_wxyz = stamps[~bad], values[~bad], quat_wxyz[~bad]
    poses = np.tile(np.eye(4), (len(values), 1, 1))
    poses[:, :3, :3] = quat_to_rot(quat_wxyz[:, [1, 2, 3, 0]])
    poses[:, :3, 3] = values[:, :3]
    return Trajectory(stamps / 1e9, poses)


def camera_groundtruth(root: str | Path, R_rect: np.ndarray | None = None,
                       notes: list[str] | None = None) -> Trajectory | None:
    """Ground truth of the camera: T_w_c0 = T_w_b @ T_BS(cam0), then into the rectified frame if R_rect is given.

    The rectified frame is x_rect = R_rect @ x_c0, so T_w_rect = T_w_c0 @ [[R_rect^T, 0], [0, 1]].
    """
    body = read_body_groundtruth(root, notes)
    if body is None:
        return None
    T_BS = read_sensor_yaml(mav0_dir(root) / "cam0" / "sensor.yaml").T_BS
    poses = body.poses @ T_BS
    if R_rect is not None:
        T_c0_rect = np.eye(4)
        T_c0_rect[:3, :3] = R_rect.T
        poses = poses @ T_c0_rect
    return Trajectory(body.timestamps.copy(), poses)


@dataclass(frozen=True)
class StereoRectification:
    camera: Camera  # the rectified left camera (baseline in metres)
    R1: np.ndarray  # unrectified cam0 -> rectified left frame
    left_maps: tuple[np.ndarray, np.ndarray]
    right_maps: tuple[np.ndarray, np.ndarray]


def stereo_rectification(left: CameraSensor, right: CameraSensor, path: Path) -> StereoRectification:
    """Rectify the pair from both T_BS (T_c1_c0 = inv(T_BS1) @ T_BS0), alpha 0, keeping the resolution."""
    if (left.width, left.height) != (right.width, right.height):
        raise SlamInputError("cam0 and cam1 resolutions differ", path)
    T_c1_c0 = np.linalg.inv(right.T_BS) @ left.T_BS
    size = (left.width, left.height)
    try:
        R1, R2, P1, P2, _Q, _roi1, _roi2 = cv2.stereoRectify(
            left.K, left.dist, right.K, right.dist, size, T_c1_c0[:3, :3], T_c1_c0[:3, 3].reshape(3, 1),
            flags=cv2.CALIB_ZERO_DISPARITY, alpha=0,
        )
    except cv2.error:
        raise SlamInputError("cam0 and cam1 cannot be rectified (check their T_BS)", path) from None
    baseline = -P2[0, 3] / P2[0, 0] if P2[0, 0] else float("nan")
    if not 0 < baseline < math.inf:
        raise SlamInputError(f"cam1 is not to the right of cam0 (baseline {baseline:.4f} m)", path)
    camera = Camera(float(P1[0, 0]), float(P1[1, 1]), float(P1[0, 2]), float(P1[1, 2]), left.width, left.height,
                    float(baseline))
    left_maps = cv2.initUndistortRectifyMap(left.K, left.dist, R1, P1[:3, :3], size, cv2.CV_16SC2)
    right_maps = cv2.initUndistortRectifyMap(right.K, right.dist, R2, P2[:3, :3], size, cv2.CV_16SC2)
    return StereoRectification(camera, R1, left_maps, right_maps)


def mono_undistortion(sensor: CameraSensor) -> tuple[Camera, tuple[np.ndarray, np.ndarray]]:
    """cam0 undistorted keeping its K and resolution: its pinhole camera and remap tables.

    EuRoC's barrel distortion means the undistorted view with the same K samples only inside the
    image (no black borders); getOptimalNewCameraMatrix would instead give non-square pixels.
    """
    size = (sensor.width, sensor.height)
    maps = cv2.initUndistortRectifyMap(sensor.K, sensor.dist, None, sensor.K, size, cv2.CV_16SC2)
    K = sensor.K
    camera = Camera(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), sensor.width, sensor.height)
    return camera, maps


def open_euroc(folder: str | Path, config: Config) -> Sequence:
    mav0 = mav0_dir(folder)
    if config.mode == "rgbd":
        raise SlamInputError("EuRoC has no depth images: use mode mono or stereo", folder)
    warnings: list[str] = []
    if config.camera.fx is not None:
        warnings.append("camera.fx/fy/cx/cy in the config are ignored: EuRoC intrinsics come from sensor.yaml")
    left = _CameraStream.read(mav0 / "cam0")
    skipped = list(left.skipped)
    if config.mode == "stereo":
        right = _CameraStream.read(mav0 / "cam1")
        skipped += right.skipped
        rect = stereo_rectification(left.sensor, right.sensor, mav0)
        camera, R_rect = rect.camera, rect.R1
        left_idx, right_idx = _pair_by_timestamp(left.stamps_ns, right.stamps_ns)
        if not len(left_idx):
            raise SlamInputError("no cam0 and cam1 images share a timestamp", mav0)
        if len(left_idx) < len(left.stamps_ns):
            warnings.append(f"{len(left.stamps_ns) - len(left_idx)} cam0 frames without a cam1 frame were dropped")
        left = left.subset(left_idx, rect.left_maps)
        right = right.subset(right_idx, rect.right_maps)
    else:
        camera, maps = mono_undistortion(left.sensor)
        left, right, R_rect = left.subset(np.arange(len(left.files)), maps), None, None
    timestamps = left.stamps_ns / 1e9
    for stream in (left, right) if right is not None else (left,):
        stream.check_resolution()
    groundtruth = camera_groundtruth(mav0, R_rect, warnings)

    def load(i: int) -> FrameData:
        frame = FrameData(index=i, timestamp=float(timestamps[i]), image=left.image(i), path=str(left.files[i]))
        if right is not None:
            frame.right = right.image(i)
        return frame

    return Sequence(name=mav0.parent.name, camera=camera, timestamps=timestamps, load=load,
                    groundtruth=groundtruth, prefetch=config.dataset.prefetch, warnings=warnings, skipped=skipped)


@dataclass(frozen=True)
class _CameraStream:
    """One camera's images with the remap tables that undistort / rectify them."""

    sensor: CameraSensor
    stamps_ns: np.ndarray
    files: list[Path]
    maps: tuple[np.ndarray, np.ndarray] | None = None
    skipped: tuple[SkippedFrame, ...] = ()

    @classmethod
    def read(cls, cam_dir: Path) -> _CameraStream:
        sensor = read_sensor_yaml(cam_dir / "sensor.yaml")
        stamps_ns, files, skipped = read_camera_csv(cam_dir)
        return cls(sensor, stamps_ns, files, skipped=tuple(skipped))

    def subset(self, index: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> _CameraStream:
        return _CameraStream(self.sensor, self.stamps_ns[index], [self.files[i] for i in index], maps, self.skipped)

    def check_resolution(self) -> None:
        """Images of another size than sensor.yaml's resolution refuse the sequence (not frame by frame)."""
        index, image = first_readable(self.files, lambda path: read_image(path, cv2.IMREAD_GRAYSCALE))
        h, w = image.shape
        if (w, h) != (self.sensor.width, self.sensor.height):
            raise SlamInputError(f"the images are {w}x{h} but sensor.yaml gives the resolution "
                                 f"{self.sensor.width}x{self.sensor.height}", self.files[index])

    def image(self, i: int) -> np.ndarray:
        path = self.files[i]
        image = read_image(path, cv2.IMREAD_GRAYSCALE)
        check_size(image, self.sensor.width, self.sensor.height, path)
        return cv2.remap(image, self.maps[0], self.maps[1], cv2.INTER_LINEAR)


def _pair_by_timestamp(left_ns: np.ndarray, right_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two cameras are hardware-synchronised: pair frames with identical timestamps."""
    _common, left_idx, right_idx = np.intersect1d(left_ns, right_ns, assume_unique=False, return_indices=True)
    return left_idx, right_idx
