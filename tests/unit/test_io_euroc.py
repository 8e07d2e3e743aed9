"""EuRoC reader on a generated mav0 folder: sensor.yaml parsing, rectification geometry, ground truth, IMU."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import load_groundtruth, open_sequence
from slam.io.euroc import read_imu, read_sensor_yaml

W, H = 376, 240
# Half-resolution versions of the real V1_01 calibration (so the geometry is realistic).
CAMS = {
    "cam0": dict(K=[229.327, 228.648, 183.6075, 124.1875], dist=[-0.2834, 0.0740, 0.00019, 1.76e-05],
                 T=[[0.0148655, -0.9998809, 0.0041403, -0.0216401], [0.9995572, 0.0149672, 0.0257155, -0.0646770],
                    [-0.0257744, 0.0037562, 0.9996607, 0.0098107], [0, 0, 0, 1]]),
    "cam1": dict(K=[228.7935, 228.067, 189.9995, 127.619], dist=[-0.2837, 0.0745, -0.000105, -3.56e-05],
                 T=[[0.0125553, -0.9997551, 0.0182238, -0.0198436], [0.9995988, 0.0130119, 0.0251588, 0.0453689],
                    [-0.0253898, 0.0179006, 0.9995173, 0.0078621], [0, 0, 0, 1]]),
}
T0_NS = 1_403_715_273_262_142_976
STEP_NS = 50_000_000
WORLD_POINT = np.array([0.3, -0.2, 2.1])


def _orthonormal(T) -> np.ndarray:
    T = np.array(T, dtype=float)
    u, _, vt = np.linalg.svd(T[:3, :3])
    T[:3, :3] = u @ vt
    return T


def _sensor_yaml(name: str) -> str:
    cam = CAMS[name]
    data = ", ".join(f"{v:.10f}" for v in _orthonormal(cam["T"]).ravel())
    return (f"%YAML:1.0\nsensor_type: camera\ncomment: {name}\nT_BS:\n  cols: 4\n  rows: 4\n  data: [{data}]\n"
            f"rate_hz: 20\nresolution: [{W}, {H}]\ncamera_model: pinhole\n"
            f"intrinsics: {cam['K']} #fu, fv, cu, cv\ndistortion_model: radial-tangential\n"
            f"distortion_coefficients: {cam['dist']}\n")


def _body_pose(i: int) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [0.1 * i, -0.05, 0.2]).as_matrix()
    T[:3, 3] = [0.05 * i, -0.02 * i, 0.1]
    return T


def _project_raw(name: str, T_w_b: np.ndarray) -> tuple[float, float]:
    cam = CAMS[name]
    T_w_c = T_w_b @ _orthonormal(cam["T"])
    p_c = np.linalg.inv(T_w_c) @ np.append(WORLD_POINT, 1.0)
    fx, fy, cx, cy = cam["K"]
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    uv, _ = cv2.projectPoints(p_c[:3].reshape(1, 3), np.zeros(3), np.zeros(3), K, np.array(cam["dist"]))
    return tuple(uv.ravel())


def make_euroc(root: Path, n: int = 3, gt: str = "csv") -> Path:
    mav0 = root / "mav0"
    for name in CAMS:
        (mav0 / name / "data").mkdir(parents=True)
        (mav0 / name / "sensor.yaml").write_text(_sensor_yaml(name))
        rows = ["#timestamp [ns],filename"]
        for i in range(n):
            stamp = T0_NS + i * STEP_NS
            image = np.full((H, W), 40, np.uint8)
            u, v = _project_raw(name, _body_pose(i))
            cv2.circle(image, (round(u), round(v)), 3, 255, -1)
            cv2.imwrite(str(mav0 / name / "data" / f"{stamp}.png"), image)
            rows.append(f"{stamp},{stamp}.png")
        (mav0 / name / "data.csv").write_text("\n".join(rows) + "\n")
    (mav0 / "imu0").mkdir()
    imu = ["#timestamp [ns],w_x,w_y,w_z,a_x,a_y,a_z"]
    imu += [f"{T0_NS + k * 5_000_000},{0.01 * k},0.02,-0.03,9.8,0.1,{-0.2 * k}" for k in range(7)]
    (mav0 / "imu0" / "data.csv").write_text("\n".join(imu) + "\n")
    poses = [_body_pose(i) for i in range(n)]
    quats = Rotation.from_matrix(np.array([p[:3, :3] for p in poses])).as_quat()  # x y z w
    if gt == "csv":
        (mav0 / "state_groundtruth_estimate0").mkdir()
        rows = ["#timestamp, p_x, p_y, p_z, q_w, q_x, q_y, q_z, v_x, v_y, v_z, bw_x, bw_y, bw_z, ba_x, ba_y, ba_z"]
        for i, (p, q) in enumerate(zip(poses, quats, strict=True)):
            vals = [*p[:3, 3], q[3], q[0], q[1], q[2]] + [0.0] * 9
            rows.append(f"{T0_NS + i * STEP_NS}," + ",".join(f"{v:.12f}" for v in vals))
        (mav0 / "state_groundtruth_estimate0" / "data.csv").write_text("\n".join(rows) + "\n")
    elif gt == "tum":
        lines = [f"{(T0_NS + i * STEP_NS) / 1e9:.9f} " + " ".join(f"{v:.12f}" for v in [*p[:3, 3], *q])
                 for i, (p, q) in enumerate(zip(poses, quats, strict=True))]
        (root / "groundtruth_body_tum.txt").write_text("# t tx ty tz qx qy qz qw\n" + "\n".join(lines) + "\n")
    return root


def _config(mode: str):
    return load_config(overrides=["dataset.format=euroc", f"mode={mode}"])


def _blob(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image > 150)
    return np.array([xs.mean(), ys.mean()])


@pytest.fixture
def euroc(tmp_path):
    return make_euroc(tmp_path / "V1_99")


def test_sensor_yaml_parsed(euroc):
    sensor = read_sensor_yaml(euroc / "mav0" / "cam0" / "sensor.yaml")
    assert sensor.K[0, 0] == pytest.approx(229.327) and sensor.K[1, 2] == pytest.approx(124.1875)
    assert (sensor.width, sensor.height) == (W, H) and sensor.dist.shape == (4,)
    np.testing.assert_allclose(sensor.T_BS, _orthonormal(CAMS["cam0"]["T"]), atol=1e-9)


def test_stereo_rectified_geometry_matches_ground_truth(euroc):
    """A world point seen through reader GT + rectified camera lands where the rectified images show it."""
    seq = open_sequence(euroc, _config("stereo"))
    assert len(seq) == 3 and seq.camera.baseline == pytest.approx(0.110, abs=0.002)
    assert seq.camera.fx == seq.camera.fy
    for i in range(len(seq)):
        frame = seq.load(i)
        k = int(np.argmin(np.abs(seq.groundtruth.timestamps - frame.timestamp)))
        p_rect = np.linalg.inv(seq.groundtruth.poses[k]) @ np.append(WORLD_POINT, 1.0)
        expected = seq.camera.project(p_rect[None, :3])[0]
        left, right = _blob(frame.image), _blob(frame.right)
        np.testing.assert_allclose(left, expected, atol=0.6)
        assert abs(right[1] - left[1]) < 0.6  # rows aligned
        assert left[0] - right[0] == pytest.approx(seq.camera.bf / p_rect[2], abs=0.6)


def test_mono_undistorts_cam0_with_its_own_k(euroc):
    seq = open_sequence(euroc, _config("mono"))
    assert seq.camera.fx == pytest.approx(229.327) and seq.camera.baseline == 0.0
    frame = seq.load(1)
    assert frame.right is None
    p_c0 = np.linalg.inv(seq.groundtruth.poses[1]) @ np.append(WORLD_POINT, 1.0)
    np.testing.assert_allclose(_blob(frame.image), seq.camera.project(p_c0[None, :3])[0], atol=0.6)


def test_groundtruth_is_body_pose_times_t_bs(euroc):
    gt = load_groundtruth(euroc)  # camera cam0, unrectified
    T_BS = _orthonormal(CAMS["cam0"]["T"])
    for i in range(3):
        np.testing.assert_allclose(gt.poses[i], _body_pose(i) @ T_BS, atol=1e-7)
    assert gt.timestamps[1] == pytest.approx((T0_NS + STEP_NS) / 1e9)


def test_tum_body_groundtruth_beside_mav0(tmp_path):
    root = make_euroc(tmp_path / "seq", gt="tum")
    gt = load_groundtruth(root)
    np.testing.assert_allclose(gt.poses[2], _body_pose(2) @ _orthonormal(CAMS["cam0"]["T"]), atol=1e-7)


def test_no_groundtruth(tmp_path):
    root = make_euroc(tmp_path / "seq", gt="none")
    assert open_sequence(root, _config("mono")).groundtruth is None
    with pytest.raises(SlamInputError, match="without ground truth"):
        load_groundtruth(root)


def test_imu(euroc):
    imu = read_imu(euroc)
    assert imu.gyro.shape == (7, 3) and imu.accel.shape == (7, 3)
    assert imu.gyro[3, 0] == pytest.approx(0.03) and imu.accel[6, 2] == pytest.approx(-1.2)
    assert np.diff(imu.timestamps) == pytest.approx(np.full(6, 0.005), abs=1e-6)  # float seconds: ~0.2 us steps


def test_rgbd_and_missing_folders(euroc, tmp_path):
    with pytest.raises(SlamInputError, match="no depth"):
        open_sequence(euroc, _config("rgbd"))
    with pytest.raises(SlamInputError, match="mav0"):
        open_sequence(tmp_path, _config("mono"))
    (euroc / "mav0" / "cam1" / "data.csv").unlink()
    with pytest.raises(SlamInputError, match="cam1/data.csv"):
        open_sequence(euroc, _config("stereo"))


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("intrinsics: [", "intrinsics: [1.0, ", "'intrinsics' must be a list of 4"),
        ("intrinsics: [229.327", "intrinsics: [fast", "'intrinsics' has a value that is not a finite number"),
        ("distortion_coefficients", "distortion_coefficient", "missing key 'distortion_coefficients'"),
        ("  data: [", "  data: [1.0, ", "'T_BS.data' must be a list of 16"),
        ("resolution: [", "resolution: [[", "invalid YAML at line"),
        ("radial-tangential", "equidistant", "not supported"),
    ],
)
def test_malformed_sensor_yaml(euroc, old, new, problem):
    path = euroc / "mav0" / "cam0" / "sensor.yaml"
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(SlamInputError) as info:
        open_sequence(euroc, _config("mono"))
    assert problem in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_data_csv_errors(euroc):
    path = euroc / "mav0" / "cam0" / "data.csv"
    original = path.read_text()
    path.write_text(original + "12x,foo.png\n")
    with pytest.raises(SlamInputError, match="line 5: timestamp '12x'"):
        open_sequence(euroc, _config("mono"))
    path.write_text(original + f"{T0_NS + 9 * STEP_NS},missing.png\n")
    seq = open_sequence(euroc, _config("mono"))
    assert [s.path for s in seq.skipped] == [str(euroc / "mav0" / "cam0" / "data" / "missing.png")]
    assert "line 5" in seq.skipped[0].reason


def test_unpaired_stereo_frames_dropped(euroc):
    path = euroc / "mav0" / "cam1" / "data.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # cam1 loses frame 1
    seq = open_sequence(euroc, _config("stereo"))
    assert len(seq) == 2 and seq.warnings and "dropped" in seq.warnings[0]
    assert seq.load(1).timestamp == pytest.approx((T0_NS + 2 * STEP_NS) / 1e9)
