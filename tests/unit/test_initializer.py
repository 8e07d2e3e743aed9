"""Two-view (monocular) initialisation on synthetic correspondences with known motion."""

import numpy as np
import pytest

from slam.geometry import rotation_angle_deg, so3_exp
from slam.initializer import TwoViewSettings, reconstruct_two_view
from slam.matching import rotation_consistent

K = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])


def _project(X: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    Xc = X @ R.T + t
    uv = Xc @ K.T
    return uv[:, :2] / uv[:, 2:]


def _views(X, R, t, noise_px, rng):
    p1 = _project(X, np.eye(3), np.zeros(3))
    p2 = _project(X, R, t)
    inside = np.all((p1 >= 0) & (p1 < [640, 480]) & (p2 >= 0) & (p2 < [640, 480]), axis=1)
    p1, p2 = p1[inside], p2[inside]
    return p1 + rng.normal(0, noise_px, p1.shape), p2 + rng.normal(0, noise_px, p2.shape)


def _general_scene(rng, n=400):
    """Points spread in depth (2-8 m) in front of the first camera: no dominant plane."""
    z = rng.uniform(2.0, 8.0, n)
    x = rng.uniform(-0.6, 0.6, n) * z
    y = rng.uniform(-0.45, 0.45, n) * z
    return np.stack([x, y, z], axis=1)


def _planar_scene(rng, n=400):
    """Points on a slanted wall about 4 m away."""
    x = rng.uniform(-2.0, 2.0, n)
    y = rng.uniform(-1.5, 1.5, n)
    return np.stack([x, y, 4.0 + 0.3 * x], axis=1)


def _motion():
    R = so3_exp(np.radians([2.0, -4.0, 1.0]))
    c2 = np.array([0.35, 0.05, 0.1])  # second camera centre, in the first camera's frame
    return R, -R @ c2


def _direction_error_deg(t_est: np.ndarray, t_true: np.ndarray) -> float:
    cos = t_est @ t_true / (np.linalg.norm(t_est) * np.linalg.norm(t_true))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@pytest.mark.parametrize("scene, model, seed", [(_general_scene, "essential", 0), (_planar_scene, "homography", 1)])
def test_the_scene_picks_its_model_and_the_motion_is_recovered(scene, model, seed):
    """A general scene is explained by the essential matrix, a planar one by the homography."""
    rng = np.random.default_rng(seed)
    R, t = _motion()
    p1, p2 = _views(scene(rng), R, t, 0.5, rng)
    view, reason = reconstruct_two_view(p1, p2, K)
    assert view is not None, reason
    assert view.model == model
    assert rotation_angle_deg(view.R @ R.T) < 1.0
    assert _direction_error_deg(view.t, t) < 1.0
    assert view.good.sum() > 0.8 * len(p1)


def test_triangulated_points_match_the_scene_up_to_scale():
    rng = np.random.default_rng(2)
    R, t = _motion()
    X = _general_scene(rng)
    p1 = _project(X, np.eye(3), np.zeros(3))
    p2 = _project(X, R, t)
    view, reason = reconstruct_two_view(p1, p2, K)
    assert view is not None, reason
    scale = np.linalg.norm(t)  # the reconstruction has |t| = 1
    err = np.linalg.norm(view.xyz[view.good] * scale - X[view.good], axis=1)
    assert np.median(err) < 0.01


@pytest.mark.parametrize("scene", [_general_scene, _planar_scene])
def test_pure_rotation_is_refused(scene):
    rng = np.random.default_rng(3)
    R = so3_exp(np.radians([1.0, 6.0, 0.5]))
    p1, p2 = _views(scene(rng), R, np.zeros(3), 0.5, rng)
    view, reason = reconstruct_two_view(p1, p2, K)
    assert view is None
    assert reason


def test_too_few_matches_are_refused():
    rng = np.random.default_rng(4)
    R, t = _motion()
    p1, p2 = _views(_general_scene(rng, n=30), R, t, 0.5, rng)
    view, reason = reconstruct_two_view(p1, p2, K, settings=TwoViewSettings(min_points=50))
    assert view is None and "matches" in reason


def test_outlier_matches_do_not_break_the_reconstruction():
    rng = np.random.default_rng(5)
    R, t = _motion()
    p1, p2 = _views(_general_scene(rng, n=500), R, t, 0.5, rng)
    bad = rng.choice(len(p2), size=len(p2) // 4, replace=False)
    p2[bad] = rng.uniform([0, 0], [640, 480], (len(bad), 2))
    view, reason = reconstruct_two_view(p1, p2, K)
    assert view is not None, reason
    assert rotation_angle_deg(view.R @ R.T) < 1.0
    assert _direction_error_deg(view.t, t) < 2.0
    assert view.good[bad].mean() < 0.1


def test_rotation_consistency_keeps_the_dominant_orientation_change():
    rng = np.random.default_rng(6)
    a1 = rng.uniform(0, 360, 300)
    a2 = np.mod(a1 - 20.0 + rng.normal(0, 2.0, 300), 360)
    wild = rng.choice(300, 60, replace=False)
    a2[wild] = rng.uniform(0, 360, 60)
    keep = rotation_consistent(a1, a2)
    consistent = np.setdiff1d(np.arange(300), wild)
    assert keep[consistent].mean() > 0.95
    assert keep[wild].mean() < 0.3
