"""Lie-group maps, triangulation and reprojection errors on generated data."""

from __future__ import annotations

import numpy as np
import pytest

from slam.camera import Camera
from slam.geometry import (
    CHI2_MONO,
    CHI2_STEREO,
    chi2_thresholds,
    reprojection_chi2,
    rotation_angle_deg,
    se3_exp,
    se3_inverse,
    so3_exp,
    so3_log,
    transform_points,
    triangulate_linear,
)

CAM = Camera(525.0, 525.0, 319.5, 239.5, 640, 480, baseline=0.08)


def random_twists(rng: np.random.Generator, angles: np.ndarray) -> np.ndarray:
    axes = rng.normal(size=(len(angles), 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return np.column_stack([axes * angles[:, None], rng.normal(size=(len(angles), 3))])


ANGLES = np.array([0.0, 1e-12, 1e-7, 1e-4, 0.01, 0.5, 1.5, 2.5, 3.0, np.pi - 1e-4, np.pi - 1e-8])


def test_so3_exp_gives_rotations_with_the_requested_angle():
    rng = np.random.default_rng(0)
    R = so3_exp(random_twists(rng, ANGLES)[:, :3])
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(rotation_angle_deg(R), np.degrees(ANGLES), rtol=1e-9, atol=1e-12)


def test_so3_exp_matches_a_known_rotation():
    R = so3_exp(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(R @ np.array([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-15)


def test_so3_log_inverts_exp_for_all_angles():
    rng = np.random.default_rng(1)
    xi = random_twists(rng, ANGLES)
    T = se3_exp(xi)
    np.testing.assert_allclose(so3_log(T[:, :3, :3]), xi[:, :3], atol=1e-9)
    # One twist at a time takes the compiled path; it must agree with the batch.
    for x, Tb in zip(xi, T, strict=True):
        np.testing.assert_allclose(se3_exp(x), Tb, atol=1e-14)
        np.testing.assert_allclose(so3_log(Tb[:3, :3]), x[:3], atol=1e-9)


def test_so3_exp_of_log_at_exactly_pi():
    # At pi the axis sign is ambiguous, so compare rotations rather than vectors.
    R = so3_exp(np.array([0.0, np.pi, 0.0]))
    np.testing.assert_allclose(so3_exp(so3_log(R)), R, atol=1e-12)
    assert np.linalg.norm(so3_log(R)) == pytest.approx(np.pi)


def test_so3_log_small_angle_keeps_relative_precision():
    phi = np.array([3e-9, -1e-9, 2e-9])
    np.testing.assert_allclose(so3_log(so3_exp(phi)), phi, rtol=1e-6)


def test_se3_exp_is_the_left_update_of_a_small_step():
    rng = np.random.default_rng(2)
    T = se3_exp(random_twists(rng, np.array([0.7]))[0])
    X = rng.normal(size=(5, 3))
    xi = np.array([1e-7, -2e-7, 3e-7, 1e-7, 2e-7, -1e-7])
    moved = transform_points(se3_exp(xi) @ T, X)
    Xc = transform_points(T, X)
    np.testing.assert_allclose(moved, Xc + np.cross(xi[:3], Xc) + xi[3:], atol=1e-12)


def test_se3_inverse_and_transform_points():
    rng = np.random.default_rng(3)
    T = se3_exp(random_twists(rng, np.array([0.3, 2.0, 3.1])))
    np.testing.assert_allclose(T @ se3_inverse(T), np.broadcast_to(np.eye(4), T.shape), atol=1e-12)
    X = rng.normal(size=(10, 3))
    homog = (T[0] @ np.column_stack([X, np.ones(10)]).T).T[:, :3]
    np.testing.assert_allclose(transform_points(T[0], X), homog, atol=1e-12)
    np.testing.assert_allclose(transform_points(se3_inverse(T[0]), transform_points(T[0], X)), X, atol=1e-12)


def two_view_scene(rng: np.random.Generator, n: int):
    T1 = se3_exp(np.array([0.02, -0.05, 0.01, 0.1, 0.0, 0.05]))
    T2 = se3_exp(np.array([-0.03, 0.08, 0.0, -0.3, 0.02, 0.0])) @ T1
    X = transform_points(se3_inverse(T1), np.column_stack([rng.uniform(-1, 1, (n, 2)), rng.uniform(2, 4, n)]))

    def normalised(T):
        Xc = transform_points(T, X)
        return Xc[:, :2] / Xc[:, 2:]

    return T1, T2, X, normalised(T1), normalised(T2)


def test_triangulation_is_exact_without_noise():
    T1, T2, X, xn1, xn2 = two_view_scene(np.random.default_rng(4), 200)
    np.testing.assert_allclose(triangulate_linear(T1, T2, xn1, xn2), X, atol=1e-9)


def test_triangulation_with_pixel_noise_matches_the_expected_depth_error():
    rng = np.random.default_rng(5)
    T1, T2, X, xn1, xn2 = two_view_scene(rng, 500)
    sigma = 0.5 / CAM.fx  # half a pixel in normalised coordinates
    est = triangulate_linear(T1, T2, xn1 + rng.normal(0, sigma, xn1.shape), xn2 + rng.normal(0, sigma, xn2.shape))
    # First-order depth error: z^2 * sigma(disparity) / baseline, disparity noise from both views.
    z = transform_points(T1, X)[:, 2]
    baseline = np.linalg.norm(se3_inverse(T1)[:3, 3] - se3_inverse(T2)[:3, 3])
    normalised = np.linalg.norm(est - X, axis=1) / (z**2 * np.sqrt(2) * sigma / baseline)
    assert np.median(normalised) < 1.0  # |N(0,1)| has median 0.67
    assert np.percentile(normalised, 95) < 3.0


def test_triangulation_of_parallel_rays_is_not_finite():
    T1 = np.eye(4)
    T2 = se3_exp(np.array([0, 0, 0, -0.5, 0, 0]))  # pure sideways translation
    xn = np.array([[0.1, -0.2], [0.0, 0.0]])
    assert not np.isfinite(triangulate_linear(T1, T2, xn, xn)).all(axis=1).any()


def projected_observations(rng: np.random.Generator, n: int):
    T = se3_exp(np.array([0.1, -0.2, 0.05, 0.3, -0.1, 0.2]))
    Xc = np.column_stack([rng.uniform(-1, 1, (n, 2)), rng.uniform(1, 5, n)])
    uv = CAM.project(Xc)
    u_right = uv[:, 0] - CAM.bf / Xc[:, 2]
    u_right[::2] = -1.0  # every other observation monocular
    return T, transform_points(se3_inverse(T), Xc), uv, u_right, Xc[:, 2]


def test_chi2_is_zero_at_the_true_pose_and_reports_depth():
    rng = np.random.default_rng(6)
    T, X, uv, u_right, depth = projected_observations(rng, 50)
    chi2, z = reprojection_chi2(T, X, uv, u_right, rng.uniform(0.2, 1.0, 50), CAM)
    np.testing.assert_allclose(chi2, 0.0, atol=1e-16)
    np.testing.assert_allclose(z, depth)


def test_chi2_weights_each_residual_by_the_information():
    rng = np.random.default_rng(7)
    T, X, uv, u_right, _ = projected_observations(rng, 4)
    inv_sigma2 = np.array([1.0, 0.5, 0.25, 2.0])
    shifted_right = np.where(u_right >= 0, u_right + 2.0, u_right)
    chi2, _ = reprojection_chi2(T, X, uv + np.array([3.0, 4.0]), shifted_right, inv_sigma2, CAM)
    # 5 px off in the left image; stereo rows (odd) are 2 px off in the right image too.
    np.testing.assert_allclose(chi2, inv_sigma2 * np.array([25.0, 29.0, 25.0, 29.0]))


def test_chi2_with_one_pose_per_observation_matches_the_single_pose():
    rng = np.random.default_rng(8)
    T, X, uv, u_right, _ = projected_observations(rng, 30)
    uv = uv + rng.normal(0, 1, uv.shape)
    one, _ = reprojection_chi2(T, X, uv, u_right, np.ones(30), CAM)
    per_obs, _ = reprojection_chi2(np.broadcast_to(T, (30, 4, 4)), X, uv, u_right, np.ones(30), CAM)
    np.testing.assert_allclose(per_obs, one)


def test_points_behind_the_camera_never_pass_a_chi2_test():
    X = np.array([[0.0, 0.0, -2.0], [0.1, 0.0, 0.0]])
    chi2, z = reprojection_chi2(np.eye(4), X, np.full((2, 2), 300.0), np.array([-1.0, 250.0]), np.ones(2), CAM)
    assert np.all(np.isinf(chi2))
    np.testing.assert_allclose(z, [-2.0, 0.0])


def test_thresholds_follow_the_observation_kind():
    np.testing.assert_array_equal(chi2_thresholds(np.array([-1.0, 0.0, 310.0])), [CHI2_MONO, CHI2_STEREO, CHI2_STEREO])
