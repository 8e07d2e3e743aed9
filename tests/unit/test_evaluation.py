"""Trajectory evaluation on generated trajectories with known errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slam.errors import SlamInputError
from slam.evaluation import (
    EvalResult,
    evaluate,
    evaluate_files,
    format_summary,
    pairs_about_seconds,
    write_report,
)
from slam.trajectory import Trajectory, write_tum


def rot(axis_angle) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(axis_angle, dtype=float))[0]


def make_trajectory(n: int = 200, rate_hz: float = 10.0, t0: float = 100.0) -> Trajectory:
    """A smooth, non-planar loop with turning orientation (well conditioned for alignment)."""
    t = t0 + np.arange(n) / rate_hz
    s = np.arange(n) / n * 2 * np.pi
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, 3] = np.stack([3 * np.cos(s), 2 * np.sin(s), 0.5 * np.sin(3 * s)], axis=1)
    for i in range(n):
        poses[i, :3, :3] = rot([0.2 * np.sin(2 * s[i]), 0.1 * np.cos(s[i]), s[i]])
    return Trajectory(t, poses)


def sim3_moved(traj: Trajectory, R: np.ndarray, t: np.ndarray, s: float) -> Trajectory:
    """Every pose left-multiplied by the similarity [sR | t]: positions scaled, rotations only rotated."""
    poses = traj.poses.copy()
    poses[:, :3, :3] = R @ traj.poses[:, :3, :3]
    poses[:, :3, 3] = s * traj.positions @ R.T + t
    return Trajectory(traj.timestamps.copy(), poses)


def with_positions(traj: Trajectory, positions: np.ndarray) -> Trajectory:
    poses = traj.poses.copy()
    poses[:, :3, 3] = positions
    return Trajectory(traj.timestamps.copy(), poses)


def offset_every_other(traj: Trajectory, offset: np.ndarray) -> Trajectory:
    positions = traj.positions.copy()
    positions[::2] += offset
    return with_positions(traj, positions)


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def test_ground_truth_against_itself_is_zero():
    gt = make_trajectory()
    for align in ("se3", "sim3"):
        r = evaluate(gt, gt, align=align)
        assert r.matched == len(gt)
        assert r.ate_rmse_m < 1e-9 and r.ate_max_m < 1e-9
        assert r.rpe_trans_rmse_m < 1e-9 and r.rpe_rot_rmse_deg < 1e-6 and r.rpe_1s_trans_rmse_m < 1e-9
        assert r.scale == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sim3_alignment_removes_a_known_similarity(seed):
    rng = np.random.default_rng(seed)
    gt = make_trajectory(n=120)
    est = sim3_moved(gt, rot(rng.uniform(-np.pi, np.pi, 3) / np.sqrt(3)), rng.uniform(-10, 10, 3), 2.5)
    r = evaluate(gt, est, align="sim3")
    assert r.ate_rmse_m < 1e-6
    assert r.scale == pytest.approx(1 / 2.5, rel=1e-9)  # scale is applied to the estimate
    assert r.rpe_trans_rmse_m < 1e-6 and r.rpe_rot_rmse_deg < 1e-5
    assert np.allclose(r.est_xyz_aligned, gt.positions, atol=1e-6)
    rigid = evaluate(gt, est, align="se3")
    assert rigid.scale == 1.0
    assert rigid.ate_rmse_m > 1.0  # a 2.5x larger loop cannot be fitted rigidly


def test_rigid_motion_is_removed_by_se3():
    rng = np.random.default_rng(3)
    gt = make_trajectory()
    est = sim3_moved(gt, rot(random_unit(rng) * 2.0), np.array([5.0, -2.0, 1.0]), 1.0)
    r = evaluate(gt, est, align="se3")
    assert r.ate_rmse_m < 1e-9
    assert r.rpe_trans_rmse_m < 1e-9


def test_offset_at_every_other_pose_gives_known_ate_and_rpe():
    # Alignment shifts the estimate by half the offset, leaving |d|/2 at every pose; consecutive
    # relative poses each differ by the full offset |d|.
    gt = make_trajectory(n=400, rate_hz=9.0)
    est = offset_every_other(gt, 0.01 * random_unit(np.random.default_rng(7)))
    r = evaluate(gt, est)
    assert r.ate_rmse_m == pytest.approx(0.005, abs=2e-5)
    assert r.ate_median_m == pytest.approx(0.005, abs=2e-5)
    assert r.rpe_trans_rmse_m == pytest.approx(0.01, abs=1e-9)
    assert r.rpe_rot_rmse_deg < 1e-9
    # At 9 Hz, poses 1 s apart are 9 frames apart: one is offset and the other not.
    assert r.rpe_1s_trans_rmse_m == pytest.approx(0.01, abs=1e-9)


def test_rpe_over_one_second_pairs_by_time_not_frames():
    # At 8 Hz, poses 1 s apart are 8 frames apart: both or neither offset, so no relative error.
    gt = make_trajectory(n=400, rate_hz=8.0)
    est = offset_every_other(gt, np.array([0.0, 0.01, 0.0]))
    r = evaluate(gt, est)
    assert r.rpe_trans_rmse_m == pytest.approx(0.01, abs=1e-9)
    assert r.rpe_1s_trans_rmse_m < 1e-9


def test_gaussian_noise_gives_expected_ate():
    sigma = 0.02
    gt = make_trajectory(n=3000, rate_hz=30.0)
    noisy = gt.positions + np.random.default_rng(11).normal(0.0, sigma, gt.positions.shape)
    r = evaluate(gt, with_positions(gt, noisy))
    assert r.ate_rmse_m == pytest.approx(sigma * np.sqrt(3), rel=0.05)
    # Per-frame RPE differences two independent errors: sqrt(2) times the ATE.
    assert r.rpe_trans_rmse_m == pytest.approx(sigma * np.sqrt(6), rel=0.05)


def test_short_trajectory_has_no_one_second_rpe():
    gt = make_trajectory(n=8, rate_hz=10.0)
    r = evaluate(gt, gt)
    assert np.isnan(r.rpe_1s_trans_rmse_m)
    assert r.to_json_dict()["rpe_1s_trans_rmse_m"] is None
    assert "n/a" in format_summary(r)


def test_pairs_about_seconds_picks_nearest_within_tolerance():
    t = np.array([0.0, 0.5, 0.95, 1.3, 2.02, 2.5, 5.0])
    first, second = pairs_about_seconds(t, 1.0)
    assert list(zip(first.tolist(), second.tolist(), strict=True)) == [(0, 2), (2, 4)]


def test_timestamp_offset_within_tolerance_still_associates():
    gt = make_trajectory(n=100, rate_hz=10.0)
    est = Trajectory(gt.timestamps + 0.01, gt.poses.copy())
    r = evaluate(gt, est, max_diff=0.02)
    assert r.matched == len(gt)
    assert r.ate_rmse_m < 1e-9


def test_timestamp_offset_beyond_tolerance_is_an_input_error():
    gt = make_trajectory(n=100, rate_hz=10.0)
    est = Trajectory(gt.timestamps + 0.05, gt.poses.copy())
    with pytest.raises(SlamInputError, match=r"only 0 poses matched within 0\.02 s") as info:
        evaluate(gt, est, max_diff=0.02)
    assert "\n" not in str(info.value)


def test_partial_overlap_counts_matches():
    gt = make_trajectory(n=100, rate_hz=10.0)
    est = Trajectory(gt.timestamps[:2].copy(), gt.poses[:2].copy())
    with pytest.raises(SlamInputError, match="only 2 poses matched"):
        evaluate(gt, est)
    est = Trajectory(gt.timestamps[40:60].copy(), gt.poses[40:60].copy())
    assert evaluate(gt, est).matched == 20


def test_degenerate_positions_are_an_input_error():
    gt = make_trajectory(n=50)
    still = with_positions(gt, np.zeros((50, 3)))
    with pytest.raises(SlamInputError, match="cannot align"):
        evaluate(gt, still)


@pytest.mark.parametrize("align, max_diff", [("sim2", 0.02), ("se3", 0.0)])
def test_bad_arguments_are_input_errors(align, max_diff):
    gt = make_trajectory(n=20)
    with pytest.raises(SlamInputError):
        evaluate(gt, gt, align=align, max_diff=max_diff)


def test_to_json_dict_holds_only_scalars():
    gt = make_trajectory(n=50)
    d = evaluate(gt, gt, align="sim3").to_json_dict()
    assert set(d) == {
        "align", "matched", "ate_rmse_m", "ate_mean_m", "ate_median_m", "ate_max_m", "scale",
        "rpe_trans_rmse_m", "rpe_rot_rmse_deg", "rpe_1s_trans_rmse_m",
    }
    assert d["align"] == "sim3" and d["matched"] == 50
    json.dumps(d, allow_nan=False)


def test_format_summary_first_line_is_machine_readable():
    gt = make_trajectory(n=200)
    r = evaluate(gt, offset_every_other(gt, np.array([0.01, 0.0, 0.0])))
    first, human = format_summary(r).split("\n")
    key, value = first.split("=")
    assert key == "ATE_RMSE_m" and float(value) == pytest.approx(r.ate_rmse_m, abs=1e-6)
    assert "RPE" in human and "scale" in human


def _assert_png_not_blank(path):
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert image.astype(float).var() > 0


def test_write_report_writes_json_and_plots(tmp_path):
    gt = make_trajectory(n=150)
    r = evaluate(gt, offset_every_other(gt, np.array([0.0, 0.0, 0.05])), align="sim3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plotting must not warn (e.g. about backends)
        paths = write_report(r, tmp_path / "report", title="unit test")
    assert set(paths) == {"json", "trajectory", "ate"}
    assert [p.name for p in paths.values()] == ["eval.json", "trajectory_xy.png", "ate_over_time.png"]
    data = json.loads(paths["json"].read_text())
    assert data["title"] == "unit test"
    assert data["ate_rmse_m"] == pytest.approx(r.ate_rmse_m)
    assert data["align"] == "sim3" and data["matched"] == 150
    _assert_png_not_blank(paths["trajectory"])
    _assert_png_not_blank(paths["ate"])


def test_write_report_with_zero_error(tmp_path):
    gt = make_trajectory(n=30)
    paths = write_report(evaluate(gt, gt), tmp_path)
    _assert_png_not_blank(paths["ate"])


def test_evaluate_files_reads_tum_and_writes_report(tmp_path):
    gt = make_trajectory(n=100)
    est = offset_every_other(gt, np.array([0.02, 0.0, 0.0]))
    write_tum(tmp_path / "gt.txt", gt)
    write_tum(tmp_path / "est.txt", est)
    r = evaluate_files(tmp_path / "gt.txt", tmp_path / "est.txt", out_dir=tmp_path / "out")
    assert isinstance(r, EvalResult)
    assert r.ate_rmse_m == pytest.approx(0.01, abs=1e-4)
    assert (tmp_path / "out" / "eval.json").is_file()
    assert (tmp_path / "out" / "trajectory_xy.png").is_file()


def test_evaluate_files_names_the_estimate_when_nothing_matches(tmp_path):
    gt = make_trajectory(n=50, rate_hz=10.0)
    write_tum(tmp_path / "gt.txt", gt)
    write_tum(tmp_path / "est.txt", Trajectory(gt.timestamps + 1000.0, gt.poses))
    with pytest.raises(SlamInputError, match="only 0 poses matched") as info:
        evaluate_files(tmp_path / "gt.txt", tmp_path / "est.txt")
    assert info.value.path == str(tmp_path / "est.txt")
    assert str(tmp_path / "gt.txt") in str(info.value)


def test_evaluate_files_missing_file(tmp_path):
    with pytest.raises(SlamInputError, match="not found"):
        evaluate_files(tmp_path / "nope.txt", tmp_path / "nope2.txt")


def test_evaluation_does_not_touch_home(tmp_path):
    """evo's command-line settings write ~/.evo; the evaluation API must not (HOME may be read-only)."""
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import sys, numpy as np\n"
        "from slam.trajectory import Trajectory\n"
        "from slam.evaluation import evaluate\n"
        "p = np.tile(np.eye(4), (20, 1, 1)); p[:, :3, 3] = np.random.default_rng(0).normal(size=(20, 3))\n"
        "r = evaluate(Trajectory(np.arange(20.0), p), Trajectory(np.arange(20.0), p))\n"
        "assert 'evo.tools.settings' not in sys.modules\n"
        "print(r.matched)\n"
    )
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "20\n"  # evo printed nothing
    assert list(home.iterdir()) == []


def test_unsorted_estimate_gives_the_same_result():
    gt = make_trajectory(n=120, rate_hz=9.0)
    est = offset_every_other(gt, np.array([0.0, 0.0, 0.01]))
    order = np.random.default_rng(2).permutation(len(est))
    shuffled = Trajectory(est.timestamps[order], est.poses[order])
    a, b = evaluate(gt, est), evaluate(gt, shuffled)
    assert b.to_json_dict() == pytest.approx(a.to_json_dict())
    assert b.rpe_1s_trans_rmse_m == pytest.approx(0.01, abs=1e-9)
