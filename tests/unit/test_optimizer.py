"""Pose optimisation and bundle adjustment on generated scenes with noise and gross outliers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from slam.camera import Camera
from slam.geometry import rotation_angle_deg, se3_exp, se3_inverse, so3_exp, transform_points
from slam.optimizer import (
    _pose_cost,
    _pose_normal_equations,
    local_bundle_adjustment,
    optimize_pose,
)

CAM = Camera(525.0, 525.0, 319.5, 239.5, 640, 480, baseline=0.08)
SCALE = 1.2  # ORB pyramid scale factor


def perturb(T: np.ndarray, rng: np.random.Generator, degrees: float, metres: float) -> np.ndarray:
    w, r = rng.normal(size=3), rng.normal(size=3)
    step = np.r_[w / np.linalg.norm(w) * np.radians(degrees), r / np.linalg.norm(r) * metres]
    return se3_exp(step) @ T


def pose_errors(T: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    """Rotation error (deg) and camera-centre error (m)."""
    rot = float(rotation_angle_deg(T[:3, :3] @ T_true[:3, :3].T))
    return rot, float(np.linalg.norm(se3_inverse(T)[:3, 3] - se3_inverse(T_true)[:3, 3]))


def pose_scene(rng: np.random.Generator, n: int, outlier_rate: float, stereo_frac: float):
    """One camera seeing n points; noise of 1 px at octave 0, scaled with the octave as ORB's."""
    T_true = se3_exp(np.r_[rng.normal(0, 0.3, 3), rng.normal(0, 1.0, 3)])
    uv_true = rng.uniform([0, 0], [CAM.width, CAM.height], (n, 2))
    depth = rng.uniform(1.0, 6.0, n)
    X_w = transform_points(se3_inverse(T_true), CAM.unproject(uv_true, depth))
    sigma = SCALE ** rng.integers(0, 8, n)
    uv = uv_true + rng.normal(0, 1, (n, 2)) * sigma[:, None]
    u_right = uv_true[:, 0] - CAM.bf / depth + rng.normal(0, 1, n) * sigma
    u_right[rng.random(n) >= stereo_frac] = -1.0
    outlier = rng.random(n) < outlier_rate
    uv[outlier] = rng.uniform([0, 0], [CAM.width, CAM.height], (outlier.sum(), 2))  # wrong matches
    wrong_right = outlier & (u_right >= 0)
    u_right[wrong_right] = uv[wrong_right, 0] - rng.uniform(1, 60, wrong_right.sum())
    return T_true, X_w, uv, u_right, sigma**-2.0, outlier


@pytest.mark.parametrize("seed, stereo_frac", [(0, 0.5), (1, 0.5), (2, 0.5), (3, 0.0), (4, 1.0)])
def test_pose_recovered_from_a_perturbed_start_with_outliers(seed, stereo_frac):
    rng = np.random.default_rng(seed)
    T_true, X_w, uv, u_right, inv_sigma2, outlier = pose_scene(rng, 600, 0.3, stereo_frac)
    T0 = perturb(T_true, rng, 5.0, 0.10)
    inputs = [a.copy() for a in (T0, X_w, uv, u_right, inv_sigma2)]
    result = optimize_pose(T0, X_w, uv, u_right, inv_sigma2, CAM)
    rot, trans = pose_errors(result.T_cw, T_true)
    assert rot < 0.5 and trans < 0.01
    assert np.mean(~result.inliers[outlier]) >= 0.9
    assert np.mean(result.inliers[~outlier]) >= 0.9  # ~5% of true inliers fail a 95% chi2 test
    assert result.n_inliers == result.inliers.sum()
    for before, after in zip(inputs, (T0, X_w, uv, u_right, inv_sigma2), strict=True):
        np.testing.assert_array_equal(before, after)


def residuals(T, X_w, uv, u_right):
    """(N, 3) projection minus observation, right-image row zero where mono."""
    Xc = transform_points(T, X_w)
    proj = CAM.project(Xc)
    stereo = u_right >= 0
    right = np.where(stereo, proj[:, 0] - CAM.bf / Xc[:, 2] - u_right, 0.0)
    return np.column_stack([proj - uv, right])


def test_pose_normal_equations_match_finite_differences():
    rng = np.random.default_rng(10)
    T_true, X_w, uv, u_right, inv_sigma2, _ = pose_scene(rng, 40, 0.0, 0.5)
    T = perturb(T_true, rng, 2.0, 0.05)
    stereo = u_right >= 0
    obs = np.column_stack([uv, np.where(stereo, u_right, 0.0)])
    k = np.array([CAM.fx, CAM.fy, CAM.cx, CAM.cy, CAM.bf])
    no_kernel = np.full(len(uv), np.inf)
    H, g = _pose_normal_equations(T[:3, :3], T[:3, 3], X_w, obs, stereo, inv_sigma2, no_kernel, k)
    eps = 1e-6
    J = np.stack(
        [
            (residuals(se3_exp(eps * e) @ T, X_w, uv, u_right) - residuals(se3_exp(-eps * e) @ T, X_w, uv, u_right))
            / (2 * eps)
            for e in np.eye(6)
        ],
        axis=-1,
    )  # (N, 3, 6)
    r = residuals(T, X_w, uv, u_right)
    np.testing.assert_allclose(g, np.einsum("n,nij,ni->j", inv_sigma2, J, r), rtol=1e-5)
    np.testing.assert_allclose(H, np.einsum("n,nij,nik->jk", inv_sigma2, J, J), rtol=1e-5, atol=1e-3)
    cost = _pose_cost(T[:3, :3], T[:3, 3], X_w, obs, stereo, inv_sigma2, no_kernel, k)
    assert cost == pytest.approx(np.sum(inv_sigma2 * np.sum(r * r, axis=1)))


@pytest.mark.parametrize("n", [0, 3])
def test_too_few_observations_return_the_input_pose(n):
    rng = np.random.default_rng(11)
    T_true, X_w, uv, u_right, inv_sigma2, _ = pose_scene(rng, n, 0.0, 0.5)
    T0 = perturb(T_true, rng, 5.0, 0.1)
    result = optimize_pose(T0, X_w, uv, u_right, inv_sigma2, CAM)
    np.testing.assert_array_equal(result.T_cw, T0)
    assert result.inliers.shape == (n,) and result.n_inliers == result.inliers.sum() <= n


def test_points_behind_the_camera_or_not_finite_do_not_break_the_optimiser():
    rng = np.random.default_rng(12)
    T_true, X_w, uv, u_right, inv_sigma2, _ = pose_scene(rng, 50, 0.0, 0.5)
    T0 = perturb(T_true, rng, 5.0, 0.1)
    behind = transform_points(se3_inverse(T_true), -transform_points(T_true, X_w))  # mirrored through the centre
    result = optimize_pose(T0, behind, uv, u_right, inv_sigma2, CAM)
    np.testing.assert_array_equal(result.T_cw, T0)
    assert result.n_inliers == 0 and not result.inliers.any()
    X_nan = X_w.copy()
    X_nan[:10] = np.nan
    result = optimize_pose(T0, X_nan, uv, u_right, inv_sigma2, CAM)
    assert np.isfinite(result.T_cw).all() and not result.inliers[:10].any()
    assert pose_errors(result.T_cw, T_true)[1] < 0.01  # the 40 good points still fix the pose


# ----------------------------------------------------------------------------------------------
# Bundle adjustment
# ----------------------------------------------------------------------------------------------


def ba_scene(rng: np.random.Generator, n_kf: int = 8, n_pts: int = 500, outlier_rate: float = 0.05):
    """Keyframes moving sideways and turning, points 0.8-2 m deep, 1 px noise, 80% with depth."""
    T_wc = np.tile(np.eye(4), (n_kf, 1, 1))
    T_wc[:, :3, :3] = so3_exp(np.column_stack([np.zeros(n_kf), np.linspace(-0.15, 0.15, n_kf), np.zeros(n_kf)]))
    T_wc[:, :3, 3] = np.column_stack([np.linspace(0, 0.7, n_kf), 0.05 * np.sin(np.arange(n_kf)), np.zeros(n_kf)])
    poses = se3_inverse(T_wc)
    z = rng.uniform(0.8, 2.0, n_pts)
    points = np.column_stack([rng.uniform(-0.3, 0.65, n_pts) * z, rng.uniform(-0.45, 0.45, n_pts) * z, z])
    kf, pt = (a.ravel() for a in np.meshgrid(np.arange(n_kf), np.arange(n_pts), indexing="ij"))
    Xc = np.einsum("nij,nj->ni", poses[kf, :3, :3], points[pt]) + poses[kf, :3, 3]
    uv_true = CAM.project(Xc)
    seen = CAM.in_image(uv_true)
    kf, pt, Xc, uv_true = kf[seen], pt[seen], Xc[seen], uv_true[seen]
    m = len(kf)
    uv = uv_true + rng.normal(0, 1, (m, 2))
    u_right = np.where(rng.random(m) < 0.8, uv_true[:, 0] - CAM.bf / Xc[:, 2] + rng.normal(0, 1, m), -1.0)
    outlier = rng.random(m) < outlier_rate
    uv[outlier] += rng.uniform(10, 30, (outlier.sum(), 2)) * rng.choice([-1, 1], (outlier.sum(), 2))
    return poses, points, kf, pt, uv, u_right, np.ones(m), outlier


def noisy_start(rng, poses, points, fixed):
    start = poses.copy()
    for k in np.flatnonzero(~fixed):
        start[k] = perturb(poses[k], rng, 1.0, 0.02)
    return start, points + rng.normal(0, 0.03, points.shape)


def inlier_rms(result, kf, pt, uv):
    inl = ~result.outlier
    Xc = np.einsum("nij,nj->ni", result.poses_cw[kf, :3, :3], result.points_w[pt]) + result.poses_cw[kf, :3, 3]
    return float(np.sqrt(np.mean((CAM.project(Xc[inl]) - uv[inl]) ** 2)))


@pytest.mark.parametrize("seed", [0, 1])
def test_local_ba_converges_to_ground_truth_and_flags_outliers(seed):
    rng = np.random.default_rng(seed)
    poses, points, kf, pt, uv, u_right, inv_sigma2, outlier = ba_scene(rng)
    fixed = np.arange(len(poses)) < 2
    start, start_points = noisy_start(rng, poses, points, fixed)
    inputs = [a.copy() for a in (start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2)]
    result = local_bundle_adjustment(start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2, CAM)
    assert not result.aborted and result.iterations_run > 5
    assert result.poses_cw.shape == poses.shape and result.points_w.shape == points.shape
    np.testing.assert_array_equal(result.poses_cw[fixed], start[fixed])
    for k in range(len(poses)):
        rot, trans = pose_errors(result.poses_cw[k], poses[k])
        assert trans < 0.005 and rot < 0.25
    assert np.median(np.linalg.norm(result.points_w - points, axis=1)) < 0.01
    assert 0.7 < inlier_rms(result, kf, pt, uv) < 1.1  # noise is 1 px per coordinate
    assert result.outlier[outlier].mean() >= 0.95
    assert result.outlier[~outlier].mean() < 0.08
    for before, after in zip(inputs, (start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2), strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("seed, n_kf", [(0, 8), (1, 8), (2, 30)])
def test_compiled_bundle_adjustment_takes_g2o_steps(seed, n_kf):
    """The compiled solver is g2o's Levenberg on the same problem: the same estimates, outliers and iterations
    (mono and stereo edges, Huber then plain, fixed keyframes, outliers left out for the second phase). 28 free
    keyframes: the reduced system (168 unknowns) is factorised by LAPACK, as a whole map's is."""
    rng = np.random.default_rng(seed)
    poses, points, kf, pt, uv, u_right, _, _ = ba_scene(rng, n_kf=n_kf)
    inv_sigma2 = 1.0 / 1.2 ** (2 * rng.integers(0, 4, len(kf)))  # observations at several pyramid levels
    fixed = np.arange(len(poses)) < 2
    start, start_points = noisy_start(rng, poses, points, fixed)
    args = (start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2, CAM)
    ours = local_bundle_adjustment(*args, backend="compiled")
    g2o = local_bundle_adjustment(*args, backend="g2o")
    assert ours.iterations_run == g2o.iterations_run >= 14  # 15 asked; both may stop at convergence
    np.testing.assert_array_equal(ours.outlier, g2o.outlier)
    np.testing.assert_allclose(ours.poses_cw, g2o.poses_cw, atol=1e-7)
    np.testing.assert_allclose(ours.points_w, g2o.points_w, atol=1e-6)


@pytest.mark.parametrize("n", [60, 300])
def test_cholesky_solve_reads_the_lower_triangle_and_refuses_an_indefinite_matrix(n):
    """Both factorisations (loops for a local window, LAPACK from ba_solver._LAPACK_MIN_N unknowns) solve from
    the lower triangle alone, and answer False for a matrix that is not positive definite."""
    from slam import ba_solver

    rng = np.random.default_rng(n)
    M = rng.normal(size=(n, n))
    A = M @ M.T + n * np.eye(n)
    b = rng.normal(size=n)
    ok, x = ba_solver.cholesky_solve(np.tril(A), b)
    assert ok
    np.testing.assert_allclose(A @ x, b, atol=1e-9)
    indefinite = A.copy()
    indefinite[n // 2, n // 2] = -1.0
    assert not ba_solver.cholesky_solve(indefinite, b)[0]
    assert (n >= ba_solver._LAPACK_MIN_N) == (n == 300)


def test_compiled_bundle_adjustment_releases_the_gil():
    """The mapping thread's BA must not stall tracking: every compiled function it runs releases the GIL
    (with g2o, building the graph from Python held it for longer than g2o took to solve)."""
    from slam import ba_solver

    kernels = [f for f in vars(ba_solver).values() if hasattr(f, "targetoptions")]
    assert ba_solver.solve in kernels and len(kernels) >= 6
    assert all(f.targetoptions.get("nogil") for f in kernels)


def test_points_without_inlier_observations_keep_their_input_position():
    rng = np.random.default_rng(2)
    poses, points, kf, pt, uv, u_right, inv_sigma2, _ = ba_scene(rng, n_pts=200, outlier_rate=0.0)
    fixed = np.arange(len(poses)) < 2
    start, start_points = noisy_start(rng, poses, points, fixed)
    uv = uv.copy()
    uv[pt == 7] += 80.0  # every observation of point 7 is a wrong match
    # A point behind keyframe 3 with one observation: kept out of the graph, flagged.
    behind = transform_points(se3_inverse(poses[3]), np.array([[0.1, 0.0, -1.0]]))
    start_points = np.vstack([start_points, behind])
    kf, pt = np.r_[kf, 3], np.r_[pt, len(points)]
    uv, u_right, inv_sigma2 = np.vstack([uv, [[300.0, 200.0]]]), np.r_[u_right, -1.0], np.r_[inv_sigma2, 1.0]
    result = local_bundle_adjustment(start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2, CAM)
    assert result.outlier[pt == 7].all() and result.outlier[-1]
    np.testing.assert_array_equal(result.points_w[[7, len(points)]], start_points[[7, len(points)]])
    assert np.median(np.linalg.norm(result.points_w[:-1] - points, axis=1)) < 0.01


def test_abort_before_the_call_returns_the_inputs():
    rng = np.random.default_rng(3)
    poses, points, kf, pt, uv, u_right, inv_sigma2, _ = ba_scene(rng, n_pts=100)
    fixed = np.arange(len(poses)) < 2
    start, start_points = noisy_start(rng, poses, points, fixed)
    abort = threading.Event()
    abort.set()
    result = local_bundle_adjustment(start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2, CAM, abort=abort)
    assert result.aborted and result.iterations_run == 0
    np.testing.assert_array_equal(result.poses_cw, start)
    np.testing.assert_array_equal(result.points_w, start_points)
    assert result.outlier.shape == kf.shape and result.poses_cw is not start


class AbortAfterChecks(threading.Event):
    """An abort flag that reads as set from its n-th check on: a deterministic mid-run abort."""

    def __init__(self, n: int):
        super().__init__()
        self.checks, self.n = 0, n

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def test_abort_between_chunks_returns_the_progress_so_far():
    rng = np.random.default_rng(4)
    poses, points, kf, pt, uv, u_right, inv_sigma2, _ = ba_scene(rng)
    fixed = np.arange(len(poses)) < 2
    start, start_points = noisy_start(rng, poses, points, fixed)
    abort = AbortAfterChecks(3)  # before building, before the first chunk, then stop
    result = local_bundle_adjustment(start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2, CAM, abort=abort)
    assert result.aborted and 0 < result.iterations_run < 15
    assert np.isfinite(result.poses_cw).all() and np.isfinite(result.points_w).all()
    moved = [pose_errors(result.poses_cw[k], poses[k])[1] for k in range(2, len(poses))]
    initial = [pose_errors(start[k], poses[k])[1] for k in range(2, len(poses))]
    assert max(moved) < 0.5 * min(initial)  # partial results are already better than the start


def test_abort_set_from_another_thread_stops_the_adjustment():
    rng = np.random.default_rng(5)
    poses, points, kf, pt, uv, u_right, inv_sigma2, _ = ba_scene(rng)
    fixed = np.arange(len(poses)) < 2
    start, start_points = noisy_start(rng, poses, points, fixed)
    abort, started = threading.Event(), threading.Event()

    class SignallingEvent(threading.Event):
        def is_set(self) -> bool:
            started.set()
            return abort.is_set()

    setter = threading.Thread(target=lambda: started.wait(10) and abort.set())
    setter.start()
    result = local_bundle_adjustment(
        start, fixed, start_points, kf, pt, uv, u_right, inv_sigma2, CAM, iterations=10_000, abort=SignallingEvent()
    )
    setter.join()
    assert result.aborted and result.iterations_run < 10_000
    assert np.isfinite(result.poses_cw).all() and result.outlier.shape == kf.shape


def test_bad_observation_indices_are_rejected():
    rng = np.random.default_rng(7)
    poses, points, kf, pt, uv, u_right, inv_sigma2, _ = ba_scene(rng, n_pts=20)
    fixed = np.arange(len(poses)) < 2
    with pytest.raises(ValueError):
        local_bundle_adjustment(poses, fixed, points, kf, pt + len(points), uv, u_right, inv_sigma2, CAM)
