"""EuRoC MAV (ASL folder format): mav0/cam0, mav0/cam1 (data.csv + sensor.yaml), imu0, ground truth.

Stereo frames are rectified with cv2.stereoRectify (alpha 0, same resolution); the camera is the
rectified left one, whose frame differs from cam0 by the rotation R1. Monocular frames are cam0
undistorted with its own K. Ground truth is converted from the body (IMU) frame to that camera frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from slam.camera import Camera
from slam.config import Config
from slam.errors import SlamInputError
from slam.io.base import FrameData, Sequence, read_image
from slam.io.calibration import check_size
from slam.trajectory import Trajectory, quat_to_rot, read_tum

BODY_GT_TUM = "groundtruth_body_tum.txt"  # beside mav0/: TUM format, body frame
STATE_GT_CSV = Path("state_groundtruth_estimate0") / "data.csv"


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
    if lines and lines[0].startswith("%YAML"):
        lines = lines[1:]
    try:
        data = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # +1 for 1-based lines, +1 for the stripped %YAML line.
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise SlamInputError(f"invalid YAML{where}", path) from None
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
    if fu <= 0 or fv <= 0 or width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise SlamInputError("intrinsics or resolution out of range", path)
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
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value):
        raise SlamInputError(f"key '{name}' has a value that is not a finite number", path)
    return [float(v) for v in value]


def read_camera_csv(cam_dir: Path) -> tuple[np.ndarray, list[Path]]:
    """data.csv of a camera: (timestamps in ns as int64, image paths), the images checked to exist."""
    path = cam_dir / "data.csv"
    rows = _csv_rows(path, min_fields=2)
    stamps = []
    files = []
    for lineno, fields in rows:
        stamps.append(_int_field(fields[0], lineno, path))
        image = cam_dir / "data" / fields[1].strip()
        if not image.is_file():
            raise SlamInputError(f"line {lineno}: listed image '{fields[1].strip()}' does not exist", path)
        files.append(image)
    if not stamps:
        raise SlamInputError("no images listed", path)
    order = np.argsort(stamps, kind="stable")
    return np.asarray(stamps, dtype=np.int64)[order], [files[i] for i in order]


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
        return int(text.strip())
    except ValueError:
        raise SlamInputError(f"line {lineno}: timestamp '{text.strip()}' is not an integer (ns)", path) from None


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
    stamps, values = _numeric_table(path, 6)
    return ImuData(stamps / 1e9, values[:, :3], values[:, 3:])


def _numeric_table(path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """A csv of 'ns, v1..v_count' rows (extra columns ignored) as (int64 ns, (N,count) floats), sorted by time."""
    rows = _csv_rows(path, min_fields=count + 1)
    if not rows:
        raise SlamInputError("no data rows", path)
    try:
        table = np.array([fields[: count + 1] for _, fields in rows])
        stamps = table[:, 0].astype(np.int64)
        values = table[:, 1:].astype(float)
    except ValueError:
        # Vectorised parsing failed: find the offending line for the message.
        for lineno, fields in rows:
            _int_field(fields[0], lineno, path)
            _float_fields(fields[1 : count + 1], lineno, path)
        raise SlamInputError("a value is not a number", path) from None
    if not np.all(np.isfinite(values)):
        lineno = rows[int(np.argmax(~np.all(np.isfinite(values), axis=1)))][0]
        raise SlamInputError(f"line {lineno}: NaN or infinite value", path)
    order = np.argsort(stamps, kind="stable")
    return stamps[order], values[order]


def read_body_groundtruth(root: str | Path) -> Trajectory | None:
    """Body (IMU) poses T_w_b: mav0/state_groundtruth_estimate0/data.csv, else groundtruth_body_tum.txt."""
    mav0 = mav0_dir(root)
    csv_path = mav0 / STATE_GT_CSV
    if csv_path.is_file():
        return _read_state_csv(csv_path)
    tum_path = mav0.parent / BODY_GT_TUM
    if tum_path.is_file():
        return read_tum(tum_path)
    return None


def _read_state_csv(path: Path) -> Trajectory:
    stamps, values = _numeric_table(path, 7)  # ns, p xyz, q wxyz (velocity and biases follow)
    quat_wxyz = values[:, 3:7]
    if np.any(np.linalg.norm(quat_wxyz, axis=1) < 1e-6):
        raise SlamInputError("zero quaternion", path)
    poses = np.tile(np.eye(4), (len(values), 1, 1))
    poses[:, :3, :3] = quat_to_rot(quat_wxyz[:, [1, 2, 3, 0]])
    poses[:, :3, 3] = values[:, :3]
    return Trajectory(stamps / 1e9, poses)


def camera_groundtruth(root: str | Path, R_rect: np.ndarray | None = None) -> Trajectory | None:
    """Ground truth of the camera: T_w_c0 = T_w_b @ T_BS(cam0), then into the rectified frame if R_rect is given.

    The rectified frame is x_rect = R_rect @ x_c0, so T_w_rect = T_w_c0 @ [[R_rect^T, 0], [0, 1]].
    """
    body = read_body_groundtruth(root)
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
    R1, R2, P1, P2, _Q, _roi1, _roi2 = cv2.stereoRectify(
        left.K, left.dist, right.K, right.dist, size, T_c1_c0[:3, :3], T_c1_c0[:3, 3].reshape(3, 1),
        flags=cv2.CALIB_ZERO_DISPARITY, alpha=0,
    )
    baseline = -P2[0, 3] / P2[0, 0]
    if not baseline > 0:
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
    if config.mode == "stereo":
        right = _CameraStream.read(mav0 / "cam1")
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

    def load(i: int) -> FrameData:
        frame = FrameData(index=i, timestamp=float(timestamps[i]), image=left.image(i), path=str(left.files[i]))
        if right is not None:
            frame.right = right.image(i)
        return frame

    return Sequence(name=mav0.parent.name, camera=camera, timestamps=timestamps, load=load,
                    groundtruth=camera_groundtruth(mav0, R_rect), prefetch=config.dataset.prefetch,
                    warnings=warnings)


@dataclass(frozen=True)
class _CameraStream:
    """One camera's images with the remap tables that undistort / rectify them."""

    sensor: CameraSensor
    stamps_ns: np.ndarray
    files: list[Path]
    maps: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def read(cls, cam_dir: Path) -> _CameraStream:
        sensor = read_sensor_yaml(cam_dir / "sensor.yaml")
        stamps_ns, files = read_camera_csv(cam_dir)
        return cls(sensor, stamps_ns, files)

    def subset(self, index: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> _CameraStream:
        return _CameraStream(self.sensor, self.stamps_ns[index], [self.files[i] for i in index], maps)

    def image(self, i: int) -> np.ndarray:
        path = self.files[i]
        image = read_image(path, cv2.IMREAD_GRAYSCALE)
        check_size(image, self.sensor.width, self.sensor.height, path)
        return cv2.remap(image, self.maps[0], self.maps[1], cv2.INTER_LINEAR)


def _pair_by_timestamp(left_ns: np.ndarray, right_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two cameras are hardware-synchronised: pair frames with identical timestamps."""
    _common, left_idx, right_idx = np.intersect1d(left_ns, right_ns, assume_unique=False, return_indices=True)
    return left_idx, right_idx
