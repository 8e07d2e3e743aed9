"""calibration.yaml: round trip, and one-line errors naming the file and key for every kind of bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.config import CameraConfig
from slam.errors import SlamInputError
from slam.io.calibration import (
    Calibration,
    Undistorter,
    calibration_from_config,
    read_calibration,
    resolve_calibration,
    write_calibration,
)

VALID = "fx: 500.0\nfy: 501.5\ncx: 320\ncy: 240.5\nwidth: 640\nheight: 480\n"


def test_round_trip(tmp_path):
    calib = Calibration(525.0, 524.0, 319.5, 239.5, 640, 480, (0.1, -0.2, 0.001, 0.002, 0.05), 0.12, 1000.0)
    path = tmp_path / "calibration.yaml"
    write_calibration(path, calib)
    assert read_calibration(path) == calib


def test_optional_keys_default(tmp_path):
    path = tmp_path / "calibration.yaml"
    path.write_text(VALID)
    calib = read_calibration(path)
    assert (calib.fx, calib.fy, calib.cx, calib.cy, calib.width, calib.height) == (500.0, 501.5, 320.0, 240.5, 640, 480)
    assert calib.dist == () and calib.baseline is None and calib.depth_scale is None
    np.testing.assert_allclose(calib.K, [[500.0, 0, 320.0], [0, 501.5, 240.5], [0, 0, 1]])


@pytest.mark.parametrize(
    "text, key",
    [
        (VALID + "fz: 3\n", "fz"),  # unknown key
        (VALID.replace("fy: 501.5\n", ""), "fy"),  # missing key
        (VALID.replace("fx: 500.0", "fx: fast"), "fx"),  # wrong type
        (VALID.replace("width: 640", "width: 640.5"), "width"),
        (VALID.replace("height: 480", "height: -2"), "height"),
        (VALID + "dist: [0.1, 0.2, x, 0.3]\n", "dist[2]"),
        (VALID + "dist: [0.1, 0.2]\n", "dist"),
        (VALID + "dist: 0.1\n", "dist"),
        (VALID + "baseline: -0.1\n", "baseline"),
        (VALID + "depth_scale: true\n", "depth_scale"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, text, key):
    path = tmp_path / "calibration.yaml"
    path.write_text(text)
    with pytest.raises(SlamInputError) as info:
        read_calibration(path)
    message = str(info.value)
    assert str(path) in message and f"'{key}'" in message and "\n" not in message


@pytest.mark.parametrize("text", ["fx: [1, 2\n", "- 1\n- 2\n", ""])
def test_not_a_mapping_or_invalid_yaml(tmp_path, text):
    path = tmp_path / "calibration.yaml"
    path.write_text(text)
    with pytest.raises(SlamInputError, match=str(path)):
        read_calibration(path)


def test_missing_file(tmp_path):
    with pytest.raises(SlamInputError, match="not found"):
        read_calibration(tmp_path / "nope.yaml")


def test_config_intrinsics_partial_set_names_the_key():
    assert calibration_from_config(CameraConfig()) is None
    with pytest.raises(SlamInputError, match="camera.cy"):
        calibration_from_config(CameraConfig(fx=1.0, fy=1.0, cx=1.0))
    with pytest.raises(SlamInputError, match="camera.dist"):
        calibration_from_config(CameraConfig(fx=1.0, fy=1.0, cx=1.0, cy=1.0, dist=(0.1, 0.2)))


def test_resolve_prefers_config_then_file_then_fails(tmp_path):
    (tmp_path / "calibration.yaml").write_text(VALID)
    calib, source = resolve_calibration(CameraConfig(fx=9.0, fy=9.0, cx=1.0, cy=1.0), tmp_path)
    assert source == "config" and calib.fx == 9.0 and calib.width is None
    calib, source = resolve_calibration(CameraConfig(), tmp_path)
    assert source.endswith("calibration.yaml") and calib.fx == 500.0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SlamInputError, match="no camera intrinsics"):
        resolve_calibration(CameraConfig(), empty)


def test_undistorter_moves_a_point_to_its_pinhole_projection():
    calib = Calibration(200.0, 200.0, 160.0, 120.0, 320, 240, (-0.3, 0.1, 0.001, 0.002, 0.0))
    point = np.array([[0.6, -0.45, 1.0]])  # camera frame
    distorted, _ = cv2.projectPoints(point, np.zeros(3), np.zeros(3), calib.K, np.array(calib.dist))
    u, v = distorted.ravel()
    image = np.zeros((240, 320), np.uint8)
    cv2.circle(image, (round(u), round(v)), 2, 255, -1)
    out = Undistorter.for_calibration(calib).image(image)
    ys, xs = np.nonzero(out > 128)
    expected = calib.camera().project(point)[0]
    assert abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0
    assert abs(u - expected[0]) > 5  # the distortion really moved it
    assert Undistorter.for_calibration(Calibration(1, 1, 1, 1, 4, 4, (0.0, 0.0, 0.0, 0.0))) is None
