"""Checkerboard calibration on boards rendered through a known camera (with distortion): the intrinsics come
back within 1%, blurred and repeated views are rejected, and `slam calibrate` writes a YAML that loads."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.errors import SlamInputError
from slam.io.calibration import Calibration, read_calibration
from slam.live.checkerboard import Board, Verdict, ViewSelector, calibrate

BOARD = Board(9, 6, 0.025)
SIZE = (640, 480)
K_TRUE = np.array([[600.0, 0.0, 322.0], [0.0, 605.0, 238.0], [0.0, 0.0, 1.0]])
DIST_TRUE = np.array([-0.12, 0.05, 0.001, -0.0005])
PX_PER_SQUARE = 48
# Board poses: tilt about x and y (degrees), roll, distance (m), offset of the board centre (m).
POSES = [
    (0, 0, 0, 0.35, 0.0, 0.0),
    (25, 0, 5, 0.4, 0.0, 0.0),
    (-25, 0, -5, 0.4, 0.0, 0.0),
    (0, 30, 0, 0.4, 0.0, 0.0),
    (0, -30, 10, 0.4, 0.0, 0.0),
    (20, 20, -10, 0.38, 0.05, 0.03),
    (-20, -25, 15, 0.42, -0.05, -0.03),
    (15, -20, 0, 0.36, 0.04, 0.03),
    (-15, 20, 30, 0.33, -0.06, -0.04),
    (10, 10, -20, 0.45, 0.08, -0.06),
]


def board_texture() -> np.ndarray:
    """The board seen flat, one square of white margin around the black-and-white squares."""
    cols, rows = BOARD.cols + 3, BOARD.rows + 3
    u = np.floor((np.arange(cols * PX_PER_SQUARE) + 0.5) / PX_PER_SQUARE).astype(int) - 2
    v = np.floor((np.arange(rows * PX_PER_SQUARE) + 0.5) / PX_PER_SQUARE).astype(int) - 2
    inside = ((u >= -1) & (u < BOARD.cols))[None, :] & ((v >= -1) & (v < BOARD.rows))[:, None]
    black = ((u[None, :] + v[:, None]) % 2 == 0) & inside
    return np.where(black, 30, 230).astype(np.uint8)


def undistorted_rays() -> np.ndarray:
    """Normalised ray (x, y) of every pixel of a 2x supersampled distorted image."""
    w, h = SIZE
    ys, xs = np.mgrid[0 : 2 * h, 0 : 2 * w].astype(np.float64)
    pixels = np.stack([(xs - 0.5) / 2, (ys - 0.5) / 2], -1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-10)
    return cv2.undistortPoints(pixels, K_TRUE, DIST_TRUE, None, None, None, criteria).reshape(-1, 2)


def board_pose(tilt_x: float, tilt_y: float, roll: float, distance: float, dx: float, dy: float):
    R = (
        cv2.Rodrigues(np.array([np.radians(tilt_x), 0.0, 0.0]))[0]
        @ cv2.Rodrigues(np.array([0.0, np.radians(tilt_y), 0.0]))[0]
        @ cv2.Rodrigues(np.array([0.0, 0.0, np.radians(roll)]))[0]
    )
    centre = np.array([(BOARD.cols - 1) / 2 * BOARD.square, (BOARD.rows - 1) / 2 * BOARD.square, 0.0])
    return R, np.array([dx, dy, distance]) - R @ centre


def render(rays: np.ndarray, texture: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Each pixel's ray meets the board plane (board point = H^-1 ray); 2x2 supersamples averaged."""
    w, h = SIZE
    to_board = np.linalg.inv(np.column_stack([R[:, 0], R[:, 1], t]))
    p = rays[:, :1] * to_board[:, 0] + rays[:, 1:] * to_board[:, 1] + to_board[:, 2]  # no BLAS for 3 columns
    z = np.where(p[:, 2] > 0, p[:, 2], np.nan)
    map_u = ((p[:, 0] / z / BOARD.square + 2) * PX_PER_SQUARE - 0.5).astype(np.float32).reshape(2 * h, 2 * w)
    map_v = ((p[:, 1] / z / BOARD.square + 2) * PX_PER_SQUARE - 0.5).astype(np.float32).reshape(2 * h, 2 * w)
    big = cv2.remap(
        texture,
        np.nan_to_num(map_u, nan=-1e4),
        np.nan_to_num(map_v, nan=-1e4),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=140,
    )
    return cv2.resize(big, SIZE, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def views() -> list[np.ndarray]:
    rays, texture = undistorted_rays(), board_texture()
    return [render(rays, texture, *board_pose(*pose)) for pose in POSES]


def test_rendered_boards_give_back_the_intrinsics_within_one_percent(views):
    selector = ViewSelector(BOARD)
    verdicts = [selector.add(view) for view in views]
    assert verdicts.count(Verdict.ACCEPTED) >= 8, verdicts
    result = calibrate(selector)
    c = result.calibration
    got = np.array([c.fx, c.fy, c.cx, c.cy])
    expected = np.array([K_TRUE[0, 0], K_TRUE[1, 1], K_TRUE[0, 2], K_TRUE[1, 2]])
    np.testing.assert_allclose(got, expected, rtol=0.01)
    assert (c.width, c.height) == SIZE and len(c.dist) == 4
    assert c.dist[0] == pytest.approx(DIST_TRUE[0], abs=0.03)  # the barrel distortion is found too
    assert result.rms_px < 0.5 and result.views == len(result.view_rms_px)


def test_blurred_and_repeated_views_are_rejected(views):
    selector = ViewSelector(BOARD)
    assert selector.add(views[1]) is Verdict.ACCEPTED
    assert selector.add(cv2.GaussianBlur(views[3], (0, 0), 2.5)) is Verdict.BLURRED
    assert selector.add(np.roll(views[1], 3, axis=1)) is Verdict.REPEATED  # the camera barely moved
    assert selector.add(np.full_like(views[0], 128)) is Verdict.NO_BOARD
    assert selector.add(views[2]) is Verdict.ACCEPTED  # tilted the other way about the same centre
    assert selector.add(views[3]) is Verdict.ACCEPTED  # the view that was rejected when blurred
    assert len(selector.corners) == 3
    with pytest.raises(SlamInputError, match=r"only 3 usable views \(3 accepted, 1 no board, 1 blurred, 1 repeated"):
        calibrate(selector)


def test_slam_calibrate_writes_the_yaml_slam_reads(views, tmp_path, capsys):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i, view in enumerate(views):
        cv2.imwrite(str(folder / f"shot{i}.png"), view)
    cv2.imwrite(str(folder / f"shot{len(views)}.png"), views[4])  # the same shot twice
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", "--images", str(folder), "--board", "9x6", "--square", "0.025", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"shot{len(views)}.png: repeated" in printed and "RMS reprojection error" in printed
    calibration = read_calibration(out)
    assert isinstance(calibration, Calibration) and (calibration.width, calibration.height) == SIZE
    assert calibration.fx == pytest.approx(600.0, rel=0.01)


def test_calibrate_input_errors(tmp_path, capsys):
    assert main(["calibrate", "--images", str(tmp_path), "--board", "9by6", "--out", str(tmp_path / "c.yaml")]) == 2
    assert "--board: expected inner corners as COLSxROWS" in capsys.readouterr().err
    assert main(["calibrate", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "c.yaml")]) == 2
    assert "image folder not found" in capsys.readouterr().err
