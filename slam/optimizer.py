"""Pose-only optimisation and bundle adjustment, ORB-SLAM style.

Pose optimisation runs twice a frame, so it is a Levenberg-Marquardt on the 6x6 normal equations
compiled with numba (~1 ms for 600 observations; vectorised numpy took 4-7 ms, a g2o graph built
from Python ~10 ms, see docs/DEPENDENCIES.md). Local bundle adjustment runs g2o's algorithm compiled
(slam.ba_solver: the same steps to 1e-7, without holding the GIL); the global one uses g2opy, which only
this module imports, for its sparse solver. See slam.geometry for the conventions.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import g2opy as g2o
import numpy as np
from numba import njit

from slam import ba_solver
from slam.camera import Camera
from slam.geometry import CHI2_MONO, CHI2_STEREO, chi2_thresholds, reprojection_chi2, se3_left_update

MIN_POSE_INLIERS = 6  # below this a 6-dof pose is not constrained: keep the input pose


@dataclass(frozen=True)
class PoseResult:
    T_cw: np.ndarray  # (4, 4) optimised pose, or the input pose when too few inliers remain
    inliers: np.ndarray  # (N,) bool: observation consistent with T_cw (chi2 under threshold)
    n_inliers: int


@dataclass(frozen=True)
class BAResult:
    poses_cw: np.ndarray  # (K, 4, 4)
    points_w: np.ndarray  # (P, 3)
    outlier: np.ndarray  # (M,) bool, classified at the returned estimates
    iterations_run: int
    aborted: bool


# ----------------------------------------------------------------------------------------------
# Pose-only optimisation
# ----------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _project_residual(R, t, X, o, stereo, k, r):
    """Writes projection - observation into r[:3]; returns the point's camera frame (x, y, z)."""
    x = R[0, 0] * X[0] + R[0, 1] * X[1] + R[0, 2] * X[2] + t[0]
    y = R[1, 0] * X[0] + R[1, 1] * X[1] + R[1, 2] * X[2] + t[1]
    z = R[2, 0] * X[0] + R[2, 1] * X[1] + R[2, 2] * X[2] + t[2]
    iz = 1.0 / z
    r[0] = k[0] * x * iz + k[2] - o[0]
    r[1] = k[1] * y * iz + k[3] - o[1]
    r[2] = (k[0] * x * iz + k[2] - k[4] * iz - o[2]) if stereo else 0.0
    return x, y, z


@njit(cache=True, nogil=True)
def _pose_cost(R, t, X_w, obs, stereo, info, delta2, k):
    """Total robust cost at (R, t); inf when a point is not in front of the camera."""
    r = np.empty(3)
    cost = 0.0
    for i in range(X_w.shape[0]):
        z = _project_residual(R, t, X_w[i], obs[i], stereo[i], k, r)[2]
        if z <= 0.0:
            return np.inf
        cost += ba_solver.huber((r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * info[i], delta2[i])[0]
    return cost


@njit(cache=True, nogil=True)
def _pose_normal_equations(R, t, X_w, obs, stereo, info, delta2, k):
    """H = J^T W J and g = J^T W r for the left update exp(xi) @ T, xi = (omega, rho).

    Rows of d(u, v, u_right)/d(Xc) are P[j]; since dXc = omega x Xc + rho, a row of the pose
    Jacobian is (Xc x P[j], P[j]).
    """
    H = np.zeros((6, 6))
    g = np.zeros(6)
    r = np.empty(3)
    J = np.zeros((3, 6))
    for i in range(X_w.shape[0]):
        x, y, z = _project_residual(R, t, X_w[i], obs[i], stereo[i], k, r)
        w = info[i] * ba_solver.huber((r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * info[i], delta2[i])[1]
        iz = 1.0 / z
        rows = 3 if stereo[i] else 2
        for j in range(rows):
            if j == 0:
                p0, p1, p2 = k[0] * iz, 0.0, -k[0] * x * iz * iz
            elif j == 1:
                p0, p1, p2 = 0.0, k[1] * iz, -k[1] * y * iz * iz
            else:
                p0, p1, p2 = k[0] * iz, 0.0, (k[4] - k[0] * x) * iz * iz
            J[j, 0] = y * p2 - z * p1
            J[j, 1] = z * p0 - x * p2
            J[j, 2] = x * p1 - y * p0
            J[j, 3] = p0
            J[j, 4] = p1
            J[j, 5] = p2
            for a in range(6):
                g[a] += w * J[j, a] * r[j]
                for b in range(a, 6):
                    H[a, b] += w * J[j, a] * J[j, b]
    for a in range(6):
        for b in range(a):
            H[a, b] = H[b, a]
    return H, g


@njit(cache=True, nogil=True)
def _solve_damped(H, g, lam):
    """Solves (H + lam * diag(H)) dx = -g by Cholesky; all-NaN when not positive definite."""
    n = H.shape[0]
    A = H.copy()
    for i in range(n):
        A[i, i] += lam * H[i, i] + 1e-12
    ok, x = ba_solver.cholesky_solve(A, -g)
    return x if ok else np.full(n, np.nan)


@njit(cache=True, nogil=True)
def _levenberg_pose(T, X_w, obs, stereo, info, delta2, k, iterations):
    """Levenberg-Marquardt on the 6x6 normal equations; stops once the cost stops falling."""
    cost = _pose_cost(T[:3, :3], T[:3, 3], X_w, obs, stereo, info, delta2, k)
    if not np.isfinite(cost):
        return T
    lam = 1e-5
    for _ in range(iterations):
        H, g = _pose_normal_equations(T[:3, :3], T[:3, 3], X_w, obs, stereo, info, delta2, k)
        accepted = False
        for _retry in range(6):
            dx = _solve_damped(H, g, lam)
            if np.all(np.isfinite(dx)):
                T_new = se3_left_update(dx, T)
                new_cost = _pose_cost(T_new[:3, :3], T_new[:3, 3], X_w, obs, stereo, info, delta2, k)
                if new_cost <= cost:
                    accepted = True
                    break
            lam *= 10.0
        if not accepted:
            return T  # no descent left: converged (or hopeless)
        converged = cost - new_cost <= 1e-10 * cost
        T, cost = T_new, new_cost
        lam = max(lam * 0.1, 1e-8)
        if converged:
            break
    return T


def optimize_pose(
    T_cw: np.ndarray,
    X_w: np.ndarray,
    uv: np.ndarray,
    u_right: np.ndarray,
    inv_sigma2: np.ndarray,
    camera: Camera,
    rounds: int = 4,
    iterations: int = 10,
) -> PoseResult:
    """Refine a camera pose against fixed map points (ORB-SLAM's Optimizer::PoseOptimization).

    Each round optimises over the current inliers (Huber kernel in all rounds but the last), then
    re-classifies every observation by chi2 against 5.991 (mono) / 7.815 (stereo), so an outlier can
    come back. Unlike ORB-SLAM a round starts from the previous round's pose, not the input one.
    """
    T_in = np.array(T_cw, dtype=float)
    X_w = np.ascontiguousarray(X_w, dtype=float).reshape(-1, 3)
    uv = np.ascontiguousarray(uv, dtype=float).reshape(-1, 2)
    u_right = np.ascontiguousarray(u_right, dtype=float).reshape(-1)
    inv_sigma2 = np.ascontiguousarray(inv_sigma2, dtype=float).reshape(-1)
    intrinsics = np.array([camera.fx, camera.fy, camera.cx, camera.cy, camera.bf])
    T, inliers = _pose_rounds(T_in, X_w, uv, u_right, inv_sigma2, chi2_thresholds(u_right), intrinsics, rounds,
                              iterations, MIN_POSE_INLIERS)
    return PoseResult(T, inliers, int(inliers.sum()))


def warm_up() -> None:
    """Load (or compile) the pose optimisation's kernel before timing starts, on a tiny problem."""
    X_w = np.array([[0.0, 0.0, 2.0], [0.5, 0.0, 2.0], [0.0, 0.5, 3.0], [0.5, 0.5, 2.5]])
    uv = 100.0 * X_w[:, :2] / X_w[:, 2:] + 50.0
    camera = Camera(100.0, 100.0, 50.0, 50.0, 100, 100)
    optimize_pose(np.eye(4), X_w, uv, np.full(4, -1.0), np.ones(4), camera)


@njit(cache=True, nogil=True)
def _pose_rounds(T_in, X_w, uv, u_right, inv_sigma2, thr, k, rounds, iterations, min_inliers):
    """optimize_pose's rounds in one compiled call: the tracking thread made ~30 numpy calls per pose between
    them (half of the pose optimisation's 2.8 ms per teddy frame), each a chance to wait for the GIL."""
    n = X_w.shape[0]
    valid = np.empty(n, np.bool_)
    for i in range(n):
        valid[i] = (np.isfinite(X_w[i, 0]) and np.isfinite(X_w[i, 1]) and np.isfinite(X_w[i, 2])
                    and np.isfinite(uv[i, 0]) and np.isfinite(uv[i, 1]) and np.isfinite(inv_sigma2[i]))
    stereo = u_right >= 0
    obs = np.empty((n, 3))
    for i in range(n):
        obs[i, 0], obs[i, 1] = uv[i, 0], uv[i, 1]
        obs[i, 2] = u_right[i] if stereo[i] else 0.0
    active = np.empty(n, np.bool_)
    chi2 = np.empty(n)
    depth = _chi2(T_in, X_w, obs, stereo, inv_sigma2, k, chi2)
    for i in range(n):  # in front of the camera at the input pose
        active[i] = valid[i] and depth[i] > 0
    T = T_in
    for rnd in range(rounds):
        m = 0
        for i in range(n):
            m += active[i]
        if m < min_inliers:
            break
        idx = np.flatnonzero(active)
        delta2 = thr[idx] if rnd < rounds - 1 else np.full(m, np.inf)
        T = _levenberg_pose(T, X_w[idx], obs[idx], stereo[idx], inv_sigma2[idx], delta2, k, iterations)
        _classify(T, X_w, obs, stereo, inv_sigma2, thr, valid, k, chi2, active)
    inliers = np.empty(n, np.bool_)
    _classify(T, X_w, obs, stereo, inv_sigma2, thr, valid, k, chi2, inliers)
    if inliers.sum() < min_inliers or not np.all(np.isfinite(T)):
        _classify(T_in, X_w, obs, stereo, inv_sigma2, thr, valid, k, chi2, inliers)
        T = T_in
    return T.copy(), inliers


@njit(cache=True, nogil=True)
def _chi2(T, X_w, obs, stereo, info, k, out):
    """Each observation's chi2 at pose T (as reprojection_chi2, from _project_residual) into out; the depths."""
    r = np.empty(3)
    depth = np.empty(X_w.shape[0])
    R, t = T[:3, :3], T[:3, 3]
    for i in range(X_w.shape[0]):
        depth[i] = _project_residual(R, t, X_w[i], obs[i], stereo[i], k, r)[2]
        out[i] = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * info[i]
    return depth


@njit(cache=True, nogil=True)
def _classify(T, X_w, obs, stereo, info, thr, valid, k, chi2, out):
    """out[i]: a valid observation in front of the camera whose chi2 is within thr[i] (chi2: scratch)."""
    depth = _chi2(T, X_w, obs, stereo, info, k, chi2)
    for i in range(X_w.shape[0]):
        out[i] = valid[i] and depth[i] > 0 and chi2[i] <= thr[i]


# ----------------------------------------------------------------------------------------------
# Bundle adjustment (g2o)
# ----------------------------------------------------------------------------------------------

_ABORT_CHUNK = 5  # optimize() iterations between abort checks: each call restarts Levenberg's lambda
_NO_KERNEL_DELTA = 1e15  # a Huber this wide is the plain quadratic: g2opy cannot unset a kernel
_MONO_TAG = "EDGE_SE3_PROJECT_XYZ:EXPMAP"
_STEREO_TAG = "EDGE_STEREO_SE3_PROJECT_XYZ:EXPMAP"


@dataclass(frozen=True)
class _Observations:
    kf: np.ndarray  # (M,) keyframe index
    pt: np.ndarray  # (M,) point index
    uv: np.ndarray  # (M, 2)
    u_right: np.ndarray  # (M,), < 0 for mono
    inv_sigma2: np.ndarray  # (M,)


@dataclass
class _Graph:
    optimizer: g2o.SparseOptimizer
    edges: dict[int, g2o.HyperGraph.Edge]  # observation index -> its edge
    kernels: tuple[g2o.RobustKernelHuber, g2o.RobustKernelHuber]  # shared by all mono / stereo edges
    keyframes: np.ndarray  # keyframe indices with a vertex; vertex id = index
    points: np.ndarray  # point indices with a vertex; vertex id = n_keyframes + index


_CHI2_CHUNK = 8192  # observations whose chi2 is computed at a time


def _observation_chi2(poses: np.ndarray, points: np.ndarray, o: _Observations, camera: Camera
                      ) -> tuple[np.ndarray, np.ndarray]:
    """reprojection_chi2 of every observation (chi2, depth), _CHI2_CHUNK observations at a time: one call
    gathers a 4x4 pose per observation (128 bytes each) plus a dozen temporaries, 12 MB at the 47585
    observations of KITTI 06's final global BA, which stayed resident through the solve. Each row's arithmetic
    is the same, so the values are too."""
    chi2, depth = np.empty(len(o.kf)), np.empty(len(o.kf))
    for start in range(0, len(o.kf), _CHI2_CHUNK):
        rows = slice(start, start + _CHI2_CHUNK)
        chi2[rows], depth[rows] = reprojection_chi2(poses[o.kf[rows]], points[o.pt[rows]], o.uv[rows],
                                                    o.u_right[rows], o.inv_sigma2[rows], camera)
    return chi2, depth


def _ba_outliers(poses: np.ndarray, points: np.ndarray, o: _Observations, camera: Camera) -> np.ndarray:
    """ORB-SLAM's test: chi2 over the threshold or the point not in front of the camera."""
    chi2, _ = _observation_chi2(poses, points, o, camera)
    return ~(chi2 <= chi2_thresholds(o.u_right))


_TEXT_CHUNK = 8192  # edges formatted at a time


def _graph_lines(points: np.ndarray, point_ids: np.ndarray, o: _Observations, edge_obs: np.ndarray, n_kf: int
                 ) -> Iterator[str]:
    """Point vertices and edges in g2o's text format (repr round-trips every float exactly), a line at a time.

    Formatted in chunks of _TEXT_CHUNK edges and streamed into the file: the whole text built as one list and
    one string held 25 MB more at its peak, 12 MB of it still resident during the solve (KITTI 06 sync, the
    final global BA: 47585 edges).
    """
    ids, coords = (point_ids + n_kf).tolist(), points[point_ids].tolist()
    for i, (x, y, z) in zip(ids, coords, strict=True):
        yield f"VERTEX_TRACKXYZ {i} {x!r} {y!r} {z!r}\n"
    # Information matrices as upper triangles, formatted once per pyramid level.
    levels = np.unique(o.inv_sigma2[edge_obs]).tolist()
    mono_info = {s: f"{s!r} 0 {s!r}\n" for s in levels}
    stereo_info = {s: f"{s!r} 0 0 {s!r} 0 {s!r}\n" for s in levels}
    for start in range(0, len(edge_obs), _TEXT_CHUNK):
        chunk = edge_obs[start:start + _TEXT_CHUNK]
        for kf, pt, (u, v), ur, s in zip(
            o.kf[chunk].tolist(),
            (o.pt[chunk] + n_kf).tolist(),
            o.uv[chunk].tolist(),
            o.u_right[chunk].tolist(),
            o.inv_sigma2[chunk].tolist(),
            strict=True,
        ):
            if ur >= 0:
                yield f"{_STEREO_TAG} {pt} {kf} {u!r} {v!r} {ur!r} {stereo_info[s]}"
            else:
                yield f"{_MONO_TAG} {pt} {kf} {u!r} {v!r} {mono_info[s]}"


_LOAD_CHUNK = 1000  # lines per g2o load() call


def _load_lines(optimizer: g2o.SparseOptimizer, lines: Iterable[str]) -> None:
    """Adds g2o text to the graph. Loading in C++ sidesteps g2opy's add_edge, whose cost grows with
    the graph (nanobind keep-alive list: ~30 us an edge at 12k edges, quadratic overall).

    load() holds the GIL throughout, so the text goes in chunks of _LOAD_CHUNK lines (each call adds to the
    graph): loaded at once, the 60k edges of the synthetic orbit's loop-closing BA stopped every other Python
    thread, tracking included, for 333 ms; in chunks the longest stop is a few milliseconds.
    """
    fd, path = tempfile.mkstemp(suffix=".g2o")
    os.close(fd)
    try:
        lines = iter(lines)
        while chunk := list(itertools.islice(lines, _LOAD_CHUNK)):
            with open(path, "w") as f:
                f.writelines(chunk)
            if not optimizer.load(path):
                raise RuntimeError("g2o could not load the bundle-adjustment graph")
    finally:
        os.unlink(path)


def _build_graph(
    poses: np.ndarray, fixed: np.ndarray, points: np.ndarray, o: _Observations, edge_obs: np.ndarray, camera: Camera
) -> _Graph:
    """SE3 pose vertices, marginalised point vertices and one projection edge per observation."""
    optimizer = g2o.SparseOptimizer()
    optimizer.set_algorithm(g2o.OptimizationAlgorithmLevenberg(g2o.BlockSolverSE3(g2o.LinearSolverEigenSE3())))
    n_kf = len(poses)
    keyframes = np.unique(o.kf[edge_obs])
    point_ids = np.unique(o.pt[edge_obs])
    for k in keyframes.tolist():
        v = g2o.VertexSE3Expmap()
        v.set_id(k)
        v.set_estimate(g2o.SE3Quat(poses[k, :3, :3], poses[k, :3, 3]))
        v.set_fixed(bool(fixed[k]))
        optimizer.add_vertex(v)
    _load_lines(optimizer, _graph_lines(points, point_ids, o, edge_obs, n_kf))
    for p in point_ids.tolist():
        optimizer.vertex(n_kf + p).set_marginalized(True)
    kernels = (g2o.RobustKernelHuber(np.sqrt(CHI2_MONO)), g2o.RobustKernelHuber(np.sqrt(CHI2_STEREO)))
    keys = zip((o.pt[edge_obs] + n_kf).tolist(), o.kf[edge_obs].tolist(), strict=True)
    obs_of = dict(zip(keys, edge_obs.tolist(), strict=True))  # (point vertex, keyframe vertex) -> obs
    edges = {}
    fx, fy, cx, cy, bf = camera.fx, camera.fy, camera.cx, camera.cy, camera.bf
    for e in optimizer.edges():
        e.fx, e.fy, e.cx, e.cy = fx, fy, cx, cy
        if isinstance(e, g2o.EdgeStereoSE3ProjectXYZ):
            e.bf = bf
            e.set_robust_kernel(kernels[1])
        else:
            e.set_robust_kernel(kernels[0])
        point_v, kf_v = e.vertices()
        edges[obs_of[(point_v.id(), kf_v.id())]] = e
    return _Graph(optimizer, edges, kernels, keyframes, point_ids)


def _in_chunks(step, iterations: int, abort: threading.Event | None) -> tuple[int, bool]:
    """Runs up to `iterations` as step(n) calls of at most _ABORT_CHUNK (each returning the iterations it ran),
    checking `abort` between them; stops early when a call runs fewer (no further descent)."""
    done = 0
    while done < iterations:
        if abort is not None and abort.is_set():
            return done, True
        count = min(_ABORT_CHUNK, iterations - done)
        ran = step(count)
        done += ran
        if ran < count:
            break
    return done, False


def _optimize_chunks(optimizer: g2o.SparseOptimizer, iterations: int, abort: threading.Event | None):
    """g2o's optimize() in chunks (it releases the GIL meanwhile); each call restarts Levenberg's damping."""
    optimizer.initialize_optimization(0)
    return _in_chunks(optimizer.optimize, iterations, abort)


def _read_estimates(graph: _Graph, poses: np.ndarray, fixed: np.ndarray, points: np.ndarray):
    """Current estimates; fixed poses, points outside the graph and any non-finite estimate keep
    their input values bit for bit."""
    new_poses = poses.copy()
    new_points = points.copy()
    n_kf = len(poses)
    for k in graph.keyframes.tolist():
        if not fixed[k]:
            new_poses[k] = graph.optimizer.vertex(k).estimate().matrix()
    for p in graph.points.tolist():
        new_points[p] = graph.optimizer.vertex(n_kf + p).estimate()
    bad_pose = ~np.isfinite(new_poses).all(axis=(1, 2))
    bad_point = ~np.isfinite(new_points).all(axis=1)
    new_poses[bad_pose] = poses[bad_pose]
    new_points[bad_point] = points[bad_point]
    return new_poses, new_points


def _check_ba_inputs(poses, fixed, points, o: _Observations) -> None:
    m = len(o.kf)
    if poses.shape[1:] != (4, 4) or fixed.shape != (len(poses),) or points.shape[1:] != (3,):
        raise ValueError("poses must be (K,4,4), fixed (K,), points (P,3)")
    if o.pt.shape != (m,) or o.uv.shape != (m, 2) or o.u_right.shape != (m,) or o.inv_sigma2.shape != (m,):
        raise ValueError("observation arrays must share their first dimension M")
    if m and (o.kf.min() < 0 or o.kf.max() >= len(poses) or o.pt.min() < 0 or o.pt.max() >= len(points)):
        raise ValueError("observation keyframe or point index out of range")


def local_bundle_adjustment(
    poses_cw: np.ndarray,
    fixed: np.ndarray,
    points_w: np.ndarray,
    obs_kf: np.ndarray,
    obs_pt: np.ndarray,
    uv: np.ndarray,
    u_right: np.ndarray,
    inv_sigma2: np.ndarray,
    camera: Camera,
    iterations: int = 10,
    abort: threading.Event | None = None,
    robust_iterations: int = 5,
    backend: str = "compiled",
) -> BAResult:
    """Bundle adjustment of keyframe poses and points, ORB-SLAM's LocalBundleAdjustment flow.

    `robust_iterations` with Huber kernels, then observations with chi2 over 5.991 / 7.815 or
    behind the camera are left out and `iterations` more run without kernels; the returned
    `outlier` flags are classified at the final estimates. Keyframes flagged in `fixed` stay put.
    A point left with no inlier observation keeps its input position. Observations that start
    behind their camera (or repeat a keyframe-point pair) stay out of the graph. `abort` is checked
    between chunks of a few iterations; when set, the estimates so far are returned with
    aborted=True. Inputs are not modified. `backend`: "compiled" (slam.ba_solver, free of the GIL) or "g2o".
    """
    poses = np.array(poses_cw, dtype=float)
    points = np.array(points_w, dtype=float).reshape(-1, 3)
    fixed = np.asarray(fixed, dtype=bool).reshape(-1)
    o = _Observations(
        np.asarray(obs_kf, dtype=np.int64).reshape(-1),
        np.asarray(obs_pt, dtype=np.int64).reshape(-1),
        np.asarray(uv, dtype=float).reshape(-1, 2),
        np.asarray(u_right, dtype=float).reshape(-1),
        np.asarray(inv_sigma2, dtype=float).reshape(-1),
    )
    _check_ba_inputs(poses, fixed, points, o)

    def result(p, x, iters, aborted):
        outlier = _ba_outliers(p, x, o, camera)
        orphan = np.bincount(o.pt[~outlier], minlength=len(x)) == 0
        x[orphan] = points[orphan]
        return BAResult(p, x, outlier, iters, aborted)

    if abort is not None and abort.is_set():
        return result(poses.copy(), points.copy(), 0, True)
    # One edge per (keyframe, point) pair in front of its camera with finite data.
    chi2, depth = _observation_chi2(poses, points, o, camera)
    usable = (depth > 0) & np.isfinite(chi2) & np.isfinite(o.inv_sigma2)
    _, first = np.unique(o.kf * len(points) + o.pt, return_index=True)
    unique = np.zeros(len(o.kf), dtype=bool)
    unique[first] = True
    edge_obs = np.flatnonzero(usable & unique)
    if len(edge_obs) == 0:
        return result(poses.copy(), points.copy(), 0, False)

    if backend == "g2o":
        new_poses, new_points, done, aborted = _solve_g2o(poses, fixed, points, o, edge_obs, camera, iterations,
                                                          abort, robust_iterations)
    else:
        new_poses, new_points, done, aborted = _solve_compiled(poses, fixed, points, o, edge_obs, camera,
                                                               iterations, abort, robust_iterations)
    return result(new_poses, new_points, done, aborted)


def _solve_g2o(poses, fixed, points, o: _Observations, edge_obs, camera, iterations, abort, robust_iterations):
    graph = _build_graph(poses, fixed, points, o, edge_obs, camera)
    done, aborted = _optimize_chunks(graph.optimizer, robust_iterations, abort)
    if not aborted and iterations > 0:
        cur_poses, cur_points = _read_estimates(graph, poses, fixed, points)
        outlier = _ba_outliers(cur_poses, cur_points, o, camera)
        for j in edge_obs[outlier[edge_obs]].tolist():
            graph.edges[j].set_level(1)
        for kernel in graph.kernels:
            kernel.set_delta(_NO_KERNEL_DELTA)
        more, aborted = _optimize_chunks(graph.optimizer, iterations, abort)
        done += more
    new_poses, new_points = _read_estimates(graph, poses, fixed, points)
    return new_poses, new_points, done, aborted


def _solve_compiled(poses, fixed, points, o: _Observations, edge_obs, camera, iterations, abort, robust_iterations):
    """The same two phases as _solve_g2o with slam.ba_solver, which releases the GIL throughout."""
    kf_in_graph = np.unique(o.kf[edge_obs])
    free = kf_in_graph[~fixed[kf_in_graph]]
    free_idx = np.full(len(poses), -1, np.int64)
    free_idx[free] = np.arange(len(free))
    pt_ids, e_pt = np.unique(o.pt[edge_obs], return_inverse=True)
    stereo = o.u_right[edge_obs] >= 0
    obs = np.column_stack([o.uv[edge_obs], np.where(stereo, o.u_right[edge_obs], 0.0)])
    e_kf = o.kf[edge_obs].astype(np.int64)
    info = o.inv_sigma2[edge_obs].astype(float)
    k = np.array([camera.fx, camera.fy, camera.cx, camera.cy, camera.bf])
    cur_poses = np.ascontiguousarray(poses, float).copy()
    cur_points = np.ascontiguousarray(points[pt_ids], float).copy()
    active = np.ones(len(edge_obs), np.bool_)
    e_pt = e_pt.astype(np.int64)
    args = (free_idx, len(free), cur_points, e_kf, e_pt, obs, stereo, info, active)
    edges_of_points = ba_solver.point_edges(e_pt, len(pt_ids))

    # Damping restarts with every chunk, as g2o's does with every optimize() call: carried over, the solver
    # converges further (KITTI 06 local BA problems: cost -15..-35%) but the trajectory is worse (KITTI 06 sync
    # 0.078 -> 0.172 m).
    def run(count, delta2):
        return _in_chunks(lambda n: ba_solver.solve(cur_poses, *args, delta2, k, *edges_of_points, n), count, abort)

    done, aborted = run(robust_iterations, np.array([CHI2_MONO, CHI2_STEREO]))
    if not aborted and iterations > 0:
        outlier = _ba_outliers(cur_poses, _scatter(points, pt_ids, cur_points), o, camera)
        active[:] = ~outlier[edge_obs]
        more, aborted = run(iterations, np.array([-1.0, -1.0]))
        done += more
    new_points = _scatter(points, pt_ids, cur_points)
    bad_pose = ~np.isfinite(cur_poses).all(axis=(1, 2))
    cur_poses[bad_pose] = poses[bad_pose]
    bad_point = ~np.isfinite(new_points).all(axis=1)
    new_points[bad_point] = points[bad_point]
    return cur_poses, new_points, done, aborted


def _scatter(points: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = points.copy()
    out[ids] = values
    return out


def pose_covariance(T_cw: np.ndarray, X_w: np.ndarray, inv_sigma2: np.ndarray, u_right: np.ndarray,
                    camera: Camera) -> np.ndarray:
    """6x6 covariance (rotation first, then translation; left perturbation) of a pose fitted to these points
    with pixel noise 1/sqrt(inv_sigma2): how well the matches pin the pose down (a narrow strip of points
    leaves a rotation traded against a translation)."""
    Xc = np.asarray(X_w, float) @ T_cw[:3, :3].T + T_cw[:3, 3]
    x, y, z = Xc[:, 0], Xc[:, 1], np.maximum(Xc[:, 2], 1e-9)
    fx, fy, bf = camera.fx, camera.fy, camera.bf
    # d(projection)/d(camera point) times d(camera point)/d(xi) with xi = (phi, rho): dXc = -[Xc]x phi + rho.
    zero = np.zeros_like(x)
    dX = np.stack([np.stack([zero, z, -y], 1), np.stack([-z, zero, x], 1), np.stack([y, -x, zero], 1)],
                  axis=1)  # (N, 3 coordinates, 3 rotation parameters) = -[Xc]x
    du = np.stack([fx / z, np.zeros_like(z), -fx * x / z**2], 1)
    dv = np.stack([np.zeros_like(z), fy / z, -fy * y / z**2], 1)
    H = np.zeros((6, 6))
    residuals = [du, dv]
    stereo = np.asarray(u_right) >= 0
    if np.any(stereo):
        dur = du.copy()
        dur[:, 2] += bf / z**2
        residuals.append(np.where(stereo[:, None], dur, 0.0))
    w = np.asarray(inv_sigma2, float)
    for d in residuals:
        J = np.concatenate([np.einsum("nc,ncr->nr", d, dX), d], axis=1)
        H += (J * w[:, None]).T @ J
    return np.linalg.pinv(H)
