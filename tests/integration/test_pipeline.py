"""`slam run` end to end: TUM fr3/teddy (RGB-D), a rendered orbit (RGB-D) and KITTI 06 (stereo).

Threaded runs (the default) vary with the CPU load, so their bounds sit above the measured spread
(docs/benchmarks.md, 5 runs each on a quiet 2-core machine: teddy 6.8-8.9 mm, KITTI 06 0.078-0.094 m; inside the
whole suite one teddy run gave 10.4 mm). Sync runs hold the tight accuracy bounds: they
(`mapping.threaded=false`) give the same trajectory every time, so their bounds sit about 8% above the
measured value: a regression of that size fails them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slam.evaluation import evaluate_files
from slam.runner import RunResult
from slam.synthetic import render_sequence
from slam.trajectory import read_tum
from slam.viewer.runfiles import read_ply
from tests.integration.runs import SYNC, run

pytestmark = pytest.mark.integration

REQUIRED_KEYS = ("mode", "frames", "tracked_frames", "tracking_ms_p50", "tracking_ms_p95", "fps", "startup_s",
                 "peak_rss_mb", "ate_rmse_m", "rpe_trans_m")


@pytest.fixture(scope="module")
def teddy(tum_teddy, tmp_path_factory) -> RunResult:
    return run("tum_fr3_rgbd.yaml", tum_teddy, tmp_path_factory.mktemp("teddy"))


@pytest.fixture(scope="module")
def teddy_sync(tum_teddy, tmp_path_factory) -> RunResult:
    return run("tum_fr3_rgbd.yaml", tum_teddy, tmp_path_factory.mktemp("teddy-sync"), *SYNC)


@pytest.fixture(scope="module")
def kitti06_sync(kitti_root, tmp_path_factory) -> RunResult:
    return run("kitti_04-12_stereo.yaml", kitti_root / "sequences" / "06", tmp_path_factory.mktemp("k06-sync"), *SYNC)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, RunResult]:
    data = render_sequence(tmp_path_factory.mktemp("data") / "orbit-300", frames=300, seed=0, trajectory="orbit")
    return data, run("synthetic_rgbd.yaml", data, tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def kitti06(kitti_root, tmp_path_factory) -> RunResult:
    return run("kitti_04-12_stereo.yaml", kitti_root / "sequences" / "06", tmp_path_factory.mktemp("kitti06"))


def check_outputs(result: RunResult, frames: int, mode: str) -> dict:
    """Exit 0, every frame tracked, run.json complete, and the trajectory / keyframe / map files readable."""
    assert result.exit_code == 0 and result.error == ""
    summary = json.loads((result.out_dir / "run.json").read_text())
    missing = [k for k in REQUIRED_KEYS if k not in summary]
    assert not missing, missing
    assert summary["mode"] == mode
    assert summary["frames"] == frames and summary["tracked_frames"] == frames
    assert 0 < summary["tracking_ms_p50"] <= summary["tracking_ms_p95"]
    assert summary["fps"] > 0 and summary["startup_s"] >= 0 and summary["peak_rss_mb"] > 0
    trajectory = read_tum(result.out_dir / "trajectory.tum")
    assert len(trajectory) == frames and np.isfinite(trajectory.poses).all()
    keyframes = read_tum(result.out_dir / "keyframes.tum")
    assert 2 <= len(keyframes) == summary["keyframes"]
    assert np.isin(keyframes.timestamps, trajectory.timestamps).all()
    points = read_ply(result.out_dir / "map.ply")[0]
    assert len(points) == summary["map_points"] > 1000 and np.isfinite(points).all()
    return summary


def test_teddy_rgbd_tracks_every_frame_and_writes_outputs(teddy):
    check_outputs(teddy, 193, "rgbd")  # 200 rgb images, 193 with a depth image within 20 ms


def test_teddy_rgbd_accuracy(teddy, tum_teddy):
    summary = json.loads((teddy.out_dir / "run.json").read_text())
    assert summary["ate_rmse_m"] <= 0.012, summary["ate_rmse_m"]
    assert summary["ate_online_rmse_m"] <= 0.012, summary["ate_online_rmse_m"]
    assert summary["rpe_trans_m"] <= 0.005, summary["rpe_trans_m"]
    # The reported ATE is the written trajectory's.
    again = evaluate_files(tum_teddy / "groundtruth.txt", teddy.out_dir / "trajectory.tum")
    assert again.ate_rmse_m == pytest.approx(summary["ate_rmse_m"], abs=1e-6)


def test_synthetic_rgbd_tracks_every_frame(synthetic):
    _, result = synthetic
    check_outputs(result, 300, "rgbd")


def test_synthetic_rgbd_accuracy(synthetic):
    data, result = synthetic
    summary = json.loads((result.out_dir / "run.json").read_text())
    assert summary["ate_rmse_m"] <= 0.01, summary["ate_rmse_m"]
    assert summary["ate_matched"] == 300
    # The map (in the first camera's frame) lies in the rendered room, |x| <= 4 m, |y| <= 3 m, 0 <= z <= 3 m,
    # up to triangulation error (points on the walls are 3-6 m away). Measured: 99.1 % within 0.25 m.
    gt = read_tum(data / "groundtruth.txt")
    points = read_ply(result.out_dir / "map.ply")[0]
    world = points @ gt.poses[0][:3, :3].T + gt.poses[0][:3, 3]
    slack = 0.25
    inside = np.all((np.abs(world[:, :2]) <= [4 + slack, 3 + slack]) & (world[:, 2:] >= -slack)
                    & (world[:, 2:] <= 3 + slack), axis=1)
    assert inside.mean() >= 0.97


def test_kitti06_stereo_tracks_every_frame_and_is_metric(kitti06):
    summary = check_outputs(kitti06, 51, "stereo")
    assert summary["ate_rmse_m"] <= 0.12, summary["ate_rmse_m"]
    assert summary["ate_align"] == "se3" and summary["ate_scale"] == pytest.approx(1.0)


def test_teddy_rgbd_sync_accuracy(teddy_sync):
    """Measured 6.17 mm re-fitted and online (6.56 and 6.35 mm with 980 and 1020 features: sync runs move that
    much with any perturbation); ORB-SLAM3: 5.3-6.9 mm over 5 runs, median 6.4 mm."""
    summary = check_outputs(teddy_sync, 193, "rgbd")
    assert summary["ate_rmse_m"] <= 0.0068, summary["ate_rmse_m"]
    assert summary["ate_online_rmse_m"] <= 0.0068, summary["ate_online_rmse_m"]


def test_kitti06_stereo_sync_accuracy(kitti06_sync):
    """Measured 0.031 m (0.033 and 0.030 m with 1950 and 2050 features); ORB-SLAM3: 0.046-0.055 m over 5 runs.
    It was 0.078 m while our ORB kept only each level's strongest corners: no keypoints on the road in front of
    the car, whose near points fix the stereo scale (slam/features/orb.py)."""
    summary = check_outputs(kitti06_sync, 51, "stereo")
    assert summary["ate_rmse_m"] <= 0.04, summary["ate_rmse_m"]
    assert summary["ate_online_rmse_m"] <= 0.04, summary["ate_online_rmse_m"]
