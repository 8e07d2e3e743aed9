"""Fuzzing the EuRoC parsers: a camera's sensor.yaml and data.csv, the ground-truth state csv, the IMU csv.

Random and mutated input must give a valid result or a one-line SlamInputError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from slam.io.base import MAX_MISSING_FRACTION
from slam.io.euroc import read_camera_csv, read_imu, read_sensor_yaml, read_state_csv
from tests.unit.fuzzing import FUZZ, lines_of, number_token, parse_or_refuse, text_input, write

SENSOR_YAML = """%YAML:1.0
# General sensor definitions.
sensor_type: camera
comment: VI-Sensor cam0 (MT9M034)
T_BS:
  cols: 4
  rows: 4
  data: [0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975,
         0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768,
        -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949,
         0.0, 0.0, 0.0, 1.0]
rate_hz: 20
resolution: [752, 480]
camera_model: pinhole
intrinsics: [458.654, 457.296, 367.215, 248.375] #fu, fv, cu, cv
distortion_model: radial-tangential
distortion_coefficients: [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05]
"""
T0 = 1403715273262142976
STEP = 50_000_000
DATA_CSV = "#timestamp [ns],filename\n" + "".join(f"{T0 + i * STEP},{T0 + i * STEP}.png\n" for i in range(5))
STATE_CSV = "#timestamp, p_x, p_y, p_z, q_w, q_x, q_y, q_z, v_x, v_y, v_z\n" + "".join(
    f"{T0 + i * STEP},{0.1 * i},0.5,1.2,{np.cos(0.1 * i):.9f},0,0,{np.sin(0.1 * i):.9f},0.1,0,0\n" for i in range(5)
)
IMU_CSV = "#timestamp [ns],w_x,w_y,w_z,a_x,a_y,a_z\n" + "".join(
    f"{T0 + i * 5_000_000},0.01,0.02,-0.03,9.8,0.1,{-0.2 * i}\n" for i in range(5)
)


@pytest.fixture(scope="module")
def cam_dir(tmp_path_factory) -> Path:
    """A camera folder whose data/ holds the five images DATA_CSV lists (empty files: only names matter)."""
    cam = tmp_path_factory.mktemp("fuzz_euroc") / "cam0"
    (cam / "data").mkdir(parents=True)
    for i in range(5):
        (cam / "data" / f"{T0 + i * STEP}.png").touch()
    return cam


@FUZZ
@given(text=text_input(SENSOR_YAML))
@example(text=SENSOR_YAML.replace("[458.654,", "[1" + "0" * 400 + ","))  # found: a huge int raised TypeError
@example(text=SENSOR_YAML.replace("rate_hz: 20", "rate_hz: 2001-13-45"))  # found: PyYAML's ValueError escaped
@example(text=SENSOR_YAML.replace("[752, 480]", "[752000000, 480]"))
def test_sensor_yaml(cam_dir, text):
    path = write(cam_dir / "sensor.yaml", text)
    sensor = parse_or_refuse(lambda: read_sensor_yaml(path), path)
    if sensor is None:
        return
    assert sensor.K[0, 0] > 0 and sensor.K[1, 1] > 0 and np.all(np.isfinite(sensor.K))
    assert 0 < sensor.width and 0 < sensor.height and np.all(np.isfinite(sensor.dist))
    assert 0 <= sensor.K[0, 2] <= sensor.width and 0 <= sensor.K[1, 2] <= sensor.height
    R = sensor.T_BS[:3, :3]
    assert abs(np.linalg.det(R) - 1) <= 1e-3


@FUZZ
@given(
    text=st.one_of(
        text_input(DATA_CSV),
        lines_of(st.one_of(number_token(), st.sampled_from([f"{T0 + i * STEP}.png" for i in range(5)])), 1, 3, sep=","),
    )
)
@example(text=f"{10**25},{T0}.png\n")  # found: a timestamp beyond int64 raised OverflowError
@example(text=f"1,{'a' * 300}.png\n")  # found: a name too long for the file system raised OSError
def test_camera_csv(cam_dir, text):
    path = write(cam_dir / "data.csv", text)
    parsed = parse_or_refuse(lambda: read_camera_csv(cam_dir), path)
    if parsed is None:
        return
    stamps, files, skipped = parsed
    assert stamps.dtype == np.int64 and len(stamps) == len(files) and np.all(np.diff(stamps) > 0)
    assert all(f.is_file() for f in files)
    missing = sum("missing" in s.reason for s in skipped)
    assert missing <= MAX_MISSING_FRACTION * (len(files) + len(skipped))


@FUZZ
@given(text=st.one_of(text_input(STATE_CSV), lines_of(number_token(), 7, 11, sep=",")), lenient=st.booleans())
@example(text=f"{10**25},0,0,0,1,0,0,0\n", lenient=False)  # found: OverflowError in the vectorised parse
def test_state_groundtruth_csv(cam_dir, text, lenient):
    path = write(cam_dir / "state.csv", text)
    notes: list[str] | None = [] if lenient else None
    trajectory = parse_or_refuse(lambda: read_state_csv(path, notes), path)
    if trajectory is None:
        return
    assert len(trajectory) >= 1 and np.all(np.isfinite(trajectory.poses))
    assert np.all(np.diff(trajectory.timestamps) > 0) if lenient else np.all(np.diff(trajectory.timestamps) >= 0)


@FUZZ
@given(text=st.one_of(text_input(IMU_CSV), lines_of(number_token(), 6, 8, sep=",")))
def test_imu_csv(cam_dir, text):
    root = cam_dir.parent / "imu_root"
    (root / "mav0" / "imu0").mkdir(parents=True, exist_ok=True)
    path = write(root / "mav0" / "imu0" / "data.csv", text)
    imu = parse_or_refuse(lambda: read_imu(root), path)
    if imu is not None:
        assert imu.gyro.shape == imu.accel.shape == (len(imu.timestamps), 3)
        assert np.all(np.isfinite(imu.gyro)) and np.all(np.isfinite(imu.accel))
