"""The readers on the real benchmark chunks in ../shared/data (skipped when absent)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import load_groundtruth, open_sequence
from slam.io.euroc import read_imu, read_sensor_yaml
from slam.io.tum import associate, read_listing

FR3 = ["camera.fx=535.4", "camera.fy=539.2", "camera.cx=320.1", "camera.cy=247.6"]


def _config(fmt: str, mode: str, *extra: str):
    return load_config(overrides=[f"dataset.format={fmt}", f"mode={mode}", *extra])


# ---------------------------------------------------------------- TUM


def test_tum_teddy_rgbd(tum_teddy):
    seq = open_sequence(tum_teddy, _config("tum", "rgbd", *FR3))
    rgb = read_listing(tum_teddy / "rgb.txt")
    depth = read_listing(tum_teddy / "depth.txt")
    assert len(rgb) == 200 and len(depth) == 200
    # Count what the association should give by brute force, independently of associate().
    gaps = np.abs(rgb.timestamps[:, None] - depth.timestamps[None, :])
    within = (gaps <= 0.02).sum(axis=1)
    assert len(seq) == 193  # measured: 7 of the 200 rgb frames have no depth image within 20 ms
    assert len(seq) <= np.count_nonzero(within)
    assert len(seq) == len(associate(rgb.timestamps, depth.timestamps, 0.02)[0])
    cam = seq.camera
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (535.4, 539.2, 320.1, 247.6, 640, 480)
    assert cam.baseline == pytest.approx(0.08)
    frame = seq.load(10)
    assert frame.image.shape == (480, 640, 3) and frame.depth.dtype == np.float32
    valid = frame.depth[frame.depth > 0]
    assert valid.size > 0.5 * frame.depth.size and 0.3 < np.median(valid) < 5.0  # a room seen by a Kinect, in m
    assert len(seq.groundtruth) == 773


def test_tum_teddy_mono_and_no_stereo(tum_teddy):
    seq = open_sequence(tum_teddy, _config("tum", "mono", *FR3))
    assert len(seq) == 200 and seq.camera.baseline == 0.0
    with pytest.raises(SlamInputError, match="right.txt"):
        open_sequence(tum_teddy, _config("tum", "stereo", *FR3))


def test_tum_config_file_gives_fr3_intrinsics(tum_teddy):
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "tum_fr3_rgbd.yaml")
    seq = open_sequence(tum_teddy, config)
    assert seq.camera.fx == 535.4 and seq.camera.fy == 539.2


# ---------------------------------------------------------------- KITTI


def test_kitti_07_mono(kitti_root):
    seq = open_sequence(kitti_root / "sequences" / "07", _config("kitti", "mono"))
    assert len(seq) == 160 and len(seq.groundtruth) == 160
    assert seq.camera.fx == pytest.approx(707.0912) and seq.camera.baseline == 0.0
    assert (seq.camera.width, seq.camera.height) == (1226, 370)
    frame = seq.load(159)
    assert frame.image.shape == (370, 1226) and frame.image.dtype == np.uint8
    np.testing.assert_allclose(seq.groundtruth.timestamps, seq.timestamps)


def test_kitti_06_stereo(kitti_root):
    seq = open_sequence(kitti_root / "sequences" / "06", _config("kitti", "stereo"))
    assert len(seq) == 51
    assert seq.camera.fx == pytest.approx(707.0912, abs=1e-3)
    assert seq.camera.baseline == pytest.approx(0.537, abs=1e-3)
    frame = seq.load(0)
    assert frame.right.shape == frame.image.shape == (370, 1226)
    with pytest.raises(SlamInputError, match="no depth"):
        open_sequence(kitti_root / "sequences" / "06", _config("kitti", "rgbd"))


def test_kitti_07_has_no_right_images(kitti_root):
    with pytest.raises(SlamInputError, match="image_1"):
        open_sequence(kitti_root / "sequences" / "07", _config("kitti", "stereo"))


# ---------------------------------------------------------------- EuRoC


def test_euroc_sensor_yaml(euroc_v101):
    sensor = read_sensor_yaml(euroc_v101 / "mav0" / "cam0" / "sensor.yaml")
    assert sensor.K[0, 0] == pytest.approx(458.654) and sensor.K[1, 1] == pytest.approx(457.296)
    assert (sensor.width, sensor.height) == (752, 480)
    assert sensor.dist[0] == pytest.approx(-0.28340811)


def test_euroc_stereo_frames_and_baseline(euroc_v101):
    seq = open_sequence(euroc_v101, _config("euroc", "stereo"))
    assert len(seq) == 40
    assert seq.camera.baseline == pytest.approx(0.110, abs=0.002)  # the VI-sensor's ~11 cm
    # Ground truth covers the whole sequence, far beyond the 40 frames: kept for timestamp association.
    assert len(seq.groundtruth) == 2895 and seq.groundtruth.timestamps[-1] > seq.timestamps[-1] + 60


def _t_bs_from_text(path: Path) -> np.ndarray:
    """T_BS read with a regex, independently of the reader's YAML handling."""
    block = re.search(r"T_BS:.*?data:\s*\[(.*?)\]", path.read_text(), re.S).group(1)
    return np.array([float(v) for v in block.replace("\n", " ").split(",")]).reshape(4, 4)


def test_euroc_groundtruth_is_body_pose_times_t_bs(euroc_v101):
    gt = load_groundtruth(euroc_v101)
    T_BS = _t_bs_from_text(euroc_v101 / "mav0" / "cam0" / "sensor.yaml")
    line = (euroc_v101 / "groundtruth_body_tum.txt").read_text().splitlines()[100].split()
    t, xyz, quat = float(line[0]), np.array(line[1:4], float), np.array(line[4:8], float)
    T_w_b = np.eye(4)
    T_w_b[:3, :3] = Rotation.from_quat(quat).as_matrix()  # scipy's order is x y z w, like TUM
    T_w_b[:3, 3] = xyz
    k = int(np.argmin(np.abs(gt.timestamps - t)))
    np.testing.assert_allclose(gt.poses[k], T_w_b @ T_BS, atol=1e-6)


def test_euroc_stereo_groundtruth_applies_rectification(euroc_v101):
    cam0 = load_groundtruth(euroc_v101)
    rect = open_sequence(euroc_v101, _config("euroc", "stereo")).groundtruth
    np.testing.assert_allclose(rect.positions, cam0.positions, atol=1e-9)  # a pure rotation about the centre
    R1 = cam0.poses[0, :3, :3].T @ rect.poses[0, :3, :3]
    assert 0.1 < np.degrees(np.arccos((np.trace(R1) - 1) / 2)) < 5.0


def test_euroc_rectified_rows_align(euroc_v101):
    seq = open_sequence(euroc_v101, _config("euroc", "stereo"))
    frame = seq.load(0)
    orb = cv2.ORB_create(1500)
    kl, dl = orb.detectAndCompute(frame.image, None)
    kr, dr = orb.detectAndCompute(frame.right, None)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(dl, dr)
    good = [m for m in matches if m.distance < 40]
    assert len(good) > 100
    dy = np.array([kl[m.queryIdx].pt[1] - kr[m.trainIdx].pt[1] for m in good])
    dx = np.array([kl[m.queryIdx].pt[0] - kr[m.trainIdx].pt[0] for m in good])
    assert np.median(np.abs(dy)) < 1.0
    assert np.median(dx) > 0  # the left image sees points further right: positive disparity


def test_euroc_raw_images_are_not_row_aligned(euroc_v101):
    """The check above means something: before rectification the rows are off by pixels."""
    mav0 = euroc_v101 / "mav0"
    name = sorted((mav0 / "cam0" / "data").iterdir())[0].name
    left = cv2.imread(str(mav0 / "cam0" / "data" / name), cv2.IMREAD_GRAYSCALE)
    right = cv2.imread(str(mav0 / "cam1" / "data" / name), cv2.IMREAD_GRAYSCALE)
    orb = cv2.ORB_create(1500)
    kl, dl = orb.detectAndCompute(left, None)
    kr, dr = orb.detectAndCompute(right, None)
    good = [m for m in cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(dl, dr) if m.distance < 40]
    dy = np.array([kl[m.queryIdx].pt[1] - kr[m.trainIdx].pt[1] for m in good])
    assert np.median(np.abs(dy)) > 2.0


def test_euroc_mono_and_imu(euroc_v101):
    seq = open_sequence(euroc_v101, _config("euroc", "mono"))
    assert len(seq) == 40 and seq.camera.fx == pytest.approx(458.654)
    imu = read_imu(euroc_v101)
    assert imu.gyro.shape == imu.accel.shape == (len(imu.timestamps), 3) and len(imu.timestamps) == 29120
    assert np.all(np.diff(imu.timestamps) > 0)
    # The vehicle stands still at the start: the accelerometer reads gravity.
    assert np.linalg.norm(imu.accel[:200].mean(axis=0)) == pytest.approx(9.81, abs=0.3)


# ---------------------------------------------------------------- ground truth auto-detection


def test_load_groundtruth_everywhere(tum_teddy, kitti_root, euroc_v101):
    assert len(load_groundtruth(tum_teddy)) == 773
    assert len(load_groundtruth(kitti_root / "sequences" / "06")) == 51
    kitti_file = load_groundtruth(kitti_root / "poses" / "07.txt")
    assert len(kitti_file) == 160 and kitti_file.timestamps[1] == pytest.approx(0.1038752)
    assert len(load_groundtruth(euroc_v101)) == 2895
