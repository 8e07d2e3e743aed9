"""The geometry loop closing rests on: 3D-3D alignment, pose graphs, and how well matches pin a pose."""

import numpy as np
import pytest

from slam.camera import Camera
from slam.geometry import rotation_angle_deg, so3_exp
from slam.optimizer import pose_covariance
from slam.pose_graph import PoseGraphEdge, optimize_pose_graph, relative
from slam.similarity import (
    ransac_alignment,
    refine_similarity,
    sim3,
    sim3_apply,
    sim3_inverse,
    sim3_scale,
    umeyama,
)

CAMERA = Camera(525.0, 525.0, 320.0, 240.0, 640, 480, 0.08)


@pytest.mark.parametrize("with_scale, s", [(False, 1.0), (True, 2.5)])
def test_umeyama_recovers_a_known_transform(with_scale, s):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    S = sim3(so3_exp(np.array([0.3, -0.2, 0.5])), np.array([1.0, -2.0, 0.5]), s)
    est = umeyama(X, sim3_apply(S, X), with_scale)
    assert np.allclose(est, S, atol=1e-9)
    assert np.allclose(sim3_inverse(est) @ S, np.eye(4), atol=1e-9)
    assert sim3_scale(est) == pytest.approx(s)


def test_ransac_alignment_ignores_30_percent_outliers():
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(200, 3))
    S = sim3(so3_exp(np.array([0.1, 0.4, -0.2])), np.array([0.5, 0.1, -1.0]), 1.7)
    Y = sim3_apply(S, X) + rng.normal(0, 0.005, X.shape)
    bad = rng.choice(200, 60, replace=False)
    Y[bad] = rng.uniform(-4, 4, (60, 3))

    def close(T):
        return np.linalg.norm(sim3_apply(T, X) - Y, axis=1) < 0.03

    found = ransac_alignment(X, Y, close, with_scale=True)
    assert found is not None
    assert found.inliers[bad].sum() == 0 and found.inliers.sum() >= 130
    assert rotation_angle_deg(found.S[:3, :3] / sim3_scale(found.S) @ (S[:3, :3] / 1.7).T) < 0.5
    assert sim3_scale(found.S) == pytest.approx(1.7, rel=0.01)


def _circle(n: int) -> np.ndarray:
    poses = []
    for k in range(n):
        a = 2 * np.pi * k / n
        R = so3_exp(np.array([0.0, a, 0.0]))
        c = np.array([3 * np.cos(a), 0.0, 3 * np.sin(a)])
        poses.append(sim3(R.T, -R.T @ c))
    return np.array(poses)


def _centres(poses: np.ndarray) -> np.ndarray:
    return np.array([sim3_inverse(S)[:3, 3] for S in poses])


@pytest.mark.parametrize("with_scale", [False, True])
def test_a_loop_edge_pulls_a_drifted_circle_back(with_scale):
    n = 20
    truth = _circle(n)
    drift = sim3(so3_exp(np.array([0.0, 0.02, 0.01])), np.array([0.02, 0.0, 0.0]), 1.0)
    drifted = [truth[0]]
    for k in range(1, n):
        drifted.append(drift @ relative(truth[k - 1], truth[k]) @ drifted[-1])
    drifted = np.array(drifted)
    edges = [PoseGraphEdge(k - 1, k, relative(drifted[k - 1], drifted[k])) for k in range(1, n)]
    edges.append(PoseGraphEdge(n - 1, 0, relative(truth[n - 1], truth[0])))
    fixed = np.zeros(n, bool)
    fixed[0] = True
    out = optimize_pose_graph(drifted, edges, fixed, with_scale)
    before = np.abs(_centres(drifted) - _centres(truth)).max()
    after = np.abs(_centres(out) - _centres(truth)).max()
    assert after < 0.4 * before
    assert np.allclose(out[0], drifted[0])


def test_points_in_a_strip_pin_the_pose_down_worse_than_spread_points():
    rng = np.random.default_rng(2)
    spread = np.column_stack([rng.uniform(-1.5, 1.5, 100), rng.uniform(-1, 1, 100), rng.uniform(2, 4, 100)])
    strip = np.column_stack([rng.uniform(-0.05, 0.05, 100), rng.uniform(-1, 1, 100), rng.uniform(2.9, 3.1, 100)])
    mono = np.full(100, -1.0)
    rot_std = []
    for X in (spread, strip):
        cov = pose_covariance(np.eye(4), X, np.ones(100), mono, CAMERA)
        rot_std.append(np.degrees(np.sqrt(np.linalg.eigvalsh(cov[:3, :3]).max())))
    assert rot_std[1] > 5 * rot_std[0]


def test_refining_on_reprojections_beats_a_fit_to_noisy_depths():
    """Monocular points carry poor depths: a 3D fit inherits their error, reprojections do not."""
    rng = np.random.default_rng(4)
    camera = Camera(500.0, 500.0, 320.0, 240.0, 640, 480)
    P = np.column_stack([rng.uniform(-2, 2, 150), rng.uniform(-1.5, 1.5, 150), rng.uniform(2, 6, 150)])
    uv = camera.project(P)  # where the current camera (at the origin) sees them
    S_true = sim3(so3_exp(np.array([0.05, -0.1, 0.02])), np.array([0.3, -0.1, 0.2]), 0.8)
    Y = sim3_apply(S_true, P)  # the same points in the loop's world
    X = P * rng.normal(1.0, 0.05, (150, 1))  # the current map's points: 5% depth noise along the rays
    S_fit = umeyama(X, Y, with_scale=True)

    def residuals(S: np.ndarray) -> np.ndarray:
        return (camera.project(sim3_apply(sim3_inverse(S), Y)) - uv).ravel()

    S_refined = refine_similarity(S_fit, residuals, with_scale=True)

    def rotation_error(S: np.ndarray) -> float:
        return rotation_angle_deg((S[:3, :3] / sim3_scale(S)) @ (S_true[:3, :3] / 0.8).T)

    # Measured: the 3D fit is off by 0.44 degrees and 11 px; refined, both ~0 (one view: the scale stays put).
    assert rotation_error(S_refined) < 0.01 < 0.1 < rotation_error(S_fit)
    assert np.abs(residuals(S_refined)).max() < 1e-3 < np.abs(residuals(S_fit)).max()
