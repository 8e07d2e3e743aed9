"""Bundle adjustment as one compiled Levenberg-Marquardt that never holds the GIL.

The same problem g2o solves for ORB-SLAM (SE3 poses updated on the left, xyz points, mono (u, v) and stereo
(u, v, u_right) reprojection edges with information inv_sigma2 * I and a Huber kernel, points marginalised
by the Schur complement, Levenberg's damping schedule), written out in numba so that the mapping thread's
bundle adjustment runs beside tracking instead of taking turns with it: building the g2o graph from Python
held the GIL for longer than g2o took to solve it (profile of a 1000-frame synthetic RGB-D run: 40% of the
mapping thread's time, docs/architecture.md). `slam.optimizer.local_bundle_adjustment` is the entry point.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from slam.geometry import se3_left_update

_TAU = 1e-5  # initial damping relative to the largest diagonal entry, as g2o's Levenberg
_MAX_TRIALS = 10  # damping increases tried per iteration before giving up, as g2o
_LAPACK_MIN_N = 128  # unknowns from which the reduced system is factorised by LAPACK


@njit(cache=True, nogil=True)
def _residual(R, t, X, obs, stereo, k, r):
    """Residual (projection - observation) of one edge into r (its third entry only for a stereo edge); False
    when the point is not in front of the camera. Returns the camera point too."""
    fx, fy, cx, cy, bf = k[0], k[1], k[2], k[3], k[4]
    xc = R[0, 0] * X[0] + R[0, 1] * X[1] + R[0, 2] * X[2] + t[0]
    yc = R[1, 0] * X[0] + R[1, 1] * X[1] + R[1, 2] * X[2] + t[1]
    zc = R[2, 0] * X[0] + R[2, 1] * X[1] + R[2, 2] * X[2] + t[2]
    if zc <= 1e-12:
        return False, xc, yc, zc
    iz = 1.0 / zc
    u = fx * xc * iz + cx
    r[0] = u - obs[0]
    r[1] = fy * yc * iz + cy - obs[1]
    r[2] = u - bf * iz - obs[2] if stereo else 0.0
    return True, xc, yc, zc


@njit(cache=True, nogil=True)
def _edge_terms(R, t, X, obs, stereo, k, r, Jp, Jl, D):
    """Residual, d residual / d pose (left twist: rotation, translation) and d residual / d point of one edge,
    written into r, Jp, Jl (D: scratch); rows beyond the second unused for a mono edge. False when z <= 0.
    Written into buffers the caller keeps: allocating them per edge was a third of the solver's time."""
    ok, xc, yc, zc = _residual(R, t, X, obs, stereo, k, r)
    if not ok:
        return False
    fx, fy, bf = k[0], k[1], k[4]
    iz = 1.0 / zc
    iz2 = iz * iz
    # d(u, v, ur)/d(camera point)
    D[0, 0] = fx * iz
    D[0, 1] = 0.0
    D[0, 2] = -fx * xc * iz2
    D[1, 0] = 0.0
    D[1, 1] = fy * iz
    D[1, 2] = -fy * yc * iz2
    rows = 2
    if stereo:
        D[2, 0] = D[0, 0]
        D[2, 1] = 0.0
        D[2, 2] = D[0, 2] + bf * iz2
        rows = 3
    for a in range(rows):
        # d Xc / d omega = -[Xc]x, d Xc / d rho = I, d Xc / d X = R
        Jp[a, 0] = -D[a, 1] * zc + D[a, 2] * yc
        Jp[a, 1] = D[a, 0] * zc - D[a, 2] * xc
        Jp[a, 2] = -D[a, 0] * yc + D[a, 1] * xc
        Jp[a, 3] = D[a, 0]
        Jp[a, 4] = D[a, 1]
        Jp[a, 5] = D[a, 2]
        for b in range(3):
            Jl[a, b] = D[a, 0] * R[0, b] + D[a, 1] * R[1, b] + D[a, 2] * R[2, b]
    return True


@njit(cache=True, nogil=True)
def huber(chi2, delta2):
    """Huber cost and weight rho'(chi2) on the chi-square value, as g2o's RobustKernelHuber; delta2 < 0: no
    kernel. The pose optimiser's too."""
    if delta2 < 0.0 or chi2 <= delta2:
        return chi2, 1.0
    root = np.sqrt(chi2 * delta2)
    return 2.0 * root - delta2, delta2 / root


@njit(cache=True, nogil=True)
def _total_cost(poses, points, e_kf, e_pt, obs, stereo, info, active, delta2, k):
    cost = 0.0
    r = np.zeros(3)
    for e in range(e_kf.shape[0]):
        if not active[e]:
            continue
        T = poses[e_kf[e]]
        ok = _residual(T[:3, :3], T[:3, 3], points[e_pt[e]], obs[e], stereo[e], k, r)[0]
        if not ok:
            continue  # g2o's projection divides anyway; a point behind the camera adds no usable term here
        chi2 = info[e] * (r[0] * r[0] + r[1] * r[1] + (r[2] * r[2] if stereo[e] else 0.0))
        cost += huber(chi2, delta2[1] if stereo[e] else delta2[0])[0]
    return cost


@njit(cache=True, nogil=True)
def _lapack_cholesky(A):
    """LAPACK's blocked factorisation (potrf; reads A's lower triangle); ok False when A is not positive
    definite or not finite."""
    try:
        L = np.linalg.cholesky(A)
    except Exception:  # noqa: BLE001 - numba raises LinAlgError for a matrix that is not positive definite
        return False, A
    for j in range(A.shape[0]):
        if not np.isfinite(L[j, j]):
            return False, A
    return True, L


@njit(cache=True, nogil=True)
def cholesky_solve(A, b):
    """Solve A x = b for symmetric positive definite A (its lower triangle read); False when A is not.

    Up to _LAPACK_MIN_N unknowns (a local window: 10 keyframes, 60) the loops below, which keep the local
    BA's results as they were bit for bit; LAPACK's blocked factorisation above that (a whole map: 882 unknowns
    for 147 keyframes, about 12 ms against 0.2 s for the loops)."""
    n = A.shape[0]
    if n >= _LAPACK_MIN_N:
        ok, L = _lapack_cholesky(A)
    else:
        ok, L = _cholesky_loops(A)
    if not ok:
        return False, b
    y = np.empty(n)
    for i in range(n):
        s = b[i]
        for q in range(i):
            s -= L[i, q] * y[q]
        y[i] = s / L[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for q in range(i + 1, n):
            s -= L[q, i] * x[q]
        x[i] = s / L[i, i]
    return True, x


@njit(cache=True, nogil=True)
def _cholesky_loops(A):
    n = A.shape[0]
    L = np.zeros((n, n))
    for j in range(n):
        s = A[j, j]
        for q in range(j):
            s -= L[j, q] * L[j, q]
        if not s > 0.0:
            return False, L
        L[j, j] = np.sqrt(s)
        for i in range(j + 1, n):
            s = A[i, j]
            for q in range(j):
                s -= L[i, q] * L[j, q]
            L[i, j] = s / L[j, j]
    return True, L


@njit(cache=True, nogil=True)
def _inv3(M, lam, out):
    """out = (M + lam I)^-1 of a 3x3 block (zero when singular)."""
    a, b, c = M[0, 0] + lam, M[0, 1], M[0, 2]
    d, e, f = M[1, 0], M[1, 1] + lam, M[1, 2]
    g, h, i = M[2, 0], M[2, 1], M[2, 2] + lam
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if abs(det) < 1e-300:
        out[:] = 0.0
        return
    out[0, 0] = (e * i - f * h) / det
    out[0, 1] = (c * h - b * i) / det
    out[0, 2] = (b * f - c * e) / det
    out[1, 0] = (f * g - d * i) / det
    out[1, 1] = (a * i - c * g) / det
    out[1, 2] = (c * d - a * f) / det
    out[2, 0] = (d * h - e * g) / det
    out[2, 1] = (b * g - a * h) / det
    out[2, 2] = (a * e - b * d) / det


@njit(cache=True, nogil=True)
def solve(poses, free_idx, n_free, points, e_kf, e_pt, obs, stereo, info, active, delta2, k, pt_start, pt_edges,
          iterations):
    """Levenberg-Marquardt iterations on (poses, points), both updated in place; the damping starts afresh
    with every call, as g2o's with every optimize().

    free_idx[kf]: the pose's block in the reduced system, -1 for a fixed keyframe. pt_edges[pt_start[p]:
    pt_start[p + 1]] are point p's edges (point_edges). delta2 = (mono, stereo) Huber thresholds on chi2,
    negative for no kernel. Returns the iterations run: fewer than asked when no damping makes the cost go
    down (converged, or nothing to optimise).
    """
    n_pts = points.shape[0]
    n = 6 * n_free
    n_edges = e_kf.shape[0]
    Hpl = np.zeros((n_edges, 6, 3))
    cost = _total_cost(poses, points, e_kf, e_pt, obs, stereo, info, active, delta2, k)
    lam, nu = -1.0, 2.0
    done = 0
    r, Jp, Jl, D, W = np.zeros(3), np.zeros((3, 6)), np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((6, 3))
    Hll_inv = np.empty((n_pts, 3, 3))
    for _ in range(iterations):
        # Normal equations of the robustified cost at the current estimate.
        Hpp = np.zeros((n, n))
        bp = np.zeros(n)
        Hll = np.zeros((n_pts, 3, 3))
        bl = np.zeros((n_pts, 3))
        has_pl = np.zeros(n_edges, np.bool_)
        for e in range(n_edges):
            if not active[e]:
                continue
            T = poses[e_kf[e]]
            p = e_pt[e]
            if not _edge_terms(T[:3, :3], T[:3, 3], points[p], obs[e], stereo[e], k, r, Jp, Jl, D):
                continue
            rows = 3 if stereo[e] else 2
            chi2 = 0.0
            for a in range(rows):
                chi2 += r[a] * r[a]
            chi2 *= info[e]
            w = info[e] * huber(chi2, delta2[1] if stereo[e] else delta2[0])[1]
            for i in range(3):
                for j in range(3):
                    s = 0.0
                    for a in range(rows):
                        s += Jl[a, i] * Jl[a, j]
                    Hll[p, i, j] += w * s
                s = 0.0
                for a in range(rows):
                    s += Jl[a, i] * r[a]
                bl[p, i] -= w * s
            f = free_idx[e_kf[e]]
            if f < 0:
                continue
            o = 6 * f
            for i in range(6):
                for j in range(i + 1):  # the lower triangle: all the Cholesky factorisation reads
                    s = 0.0
                    for a in range(rows):
                        s += Jp[a, i] * Jp[a, j]
                    Hpp[o + i, o + j] += w * s
                s = 0.0
                for a in range(rows):
                    s += Jp[a, i] * r[a]
                bp[o + i] -= w * s
                for j in range(3):
                    s = 0.0
                    for a in range(rows):
                        s += Jp[a, i] * Jl[a, j]
                    Hpl[e, i, j] = w * s
            has_pl[e] = True
        if lam < 0.0:
            top = 0.0
            for i in range(n):
                top = max(top, Hpp[i, i])
            for p in range(n_pts):
                for i in range(3):
                    top = max(top, Hll[p, i, i])
            lam = _TAU * top
        improved = False
        for _trial in range(_MAX_TRIALS):
            # Schur complement of the damped system onto the poses.
            S = Hpp.copy()
            for i in range(n):
                S[i, i] += lam
            rhs = bp.copy()
            for p in range(n_pts):
                _inv3(Hll[p], lam, Hll_inv[p])
                for a_i in range(pt_start[p], pt_start[p + 1]):
                    ea = pt_edges[a_i]
                    if not has_pl[ea]:
                        continue
                    oa = 6 * free_idx[e_kf[ea]]
                    for i in range(6):  # W = Hpl[ea] Hll_inv[p]
                        for j in range(3):
                            W[i, j] = (Hpl[ea, i, 0] * Hll_inv[p, 0, j] + Hpl[ea, i, 1] * Hll_inv[p, 1, j]
                                       + Hpl[ea, i, 2] * Hll_inv[p, 2, j])
                    for i in range(6):
                        rhs[oa + i] -= W[i, 0] * bl[p, 0] + W[i, 1] * bl[p, 1] + W[i, 2] * bl[p, 2]
                    # Only S's lower triangle is written: the Cholesky factorisation reads nothing else, and each
                    # entry there gets the same terms in the same order as when both triangles were written
                    # (half the stores: -36% of the Schur step on 11k-edge windows, same results bit for bit).
                    for b_i in range(a_i, pt_start[p + 1]):
                        eb = pt_edges[b_i]
                        if not has_pl[eb]:
                            continue
                        ob = 6 * free_idx[e_kf[eb]]
                        if b_i == a_i:
                            for i in range(6):
                                for j in range(i + 1):
                                    S[oa + i, oa + j] -= (W[i, 0] * Hpl[ea, j, 0] + W[i, 1] * Hpl[ea, j, 1]
                                                          + W[i, 2] * Hpl[ea, j, 2])
                            continue
                        if oa > ob:
                            for i in range(6):
                                for j in range(6):
                                    S[oa + i, ob + j] -= (W[i, 0] * Hpl[eb, j, 0] + W[i, 1] * Hpl[eb, j, 1]
                                                          + W[i, 2] * Hpl[eb, j, 2])
                        else:  # the transposed block (both, for two edges of one point in one keyframe)
                            for i in range(6):
                                for j in range(6):
                                    v = W[i, 0] * Hpl[eb, j, 0] + W[i, 1] * Hpl[eb, j, 1] + W[i, 2] * Hpl[eb, j, 2]
                                    S[ob + j, oa + i] -= v
                                    if oa == ob:
                                        S[oa + i, ob + j] -= v
            ok, dx = cholesky_solve(S, rhs) if n > 0 else (True, rhs)
            if ok:
                # Back-substitution for the points, then the trial estimate.
                new_points = points.copy()
                # Predicted decrease of the damped model, as g2o's gain ratio: dx . (lam dx + b), all blocks.
                predicted = 1e-3
                for i in range(n):
                    predicted += dx[i] * (lam * dx[i] + bp[i])
                g = np.empty(3)
                for p in range(n_pts):
                    g[:] = bl[p]
                    for a_i in range(pt_start[p], pt_start[p + 1]):
                        ea = pt_edges[a_i]
                        if not has_pl[ea]:
                            continue
                        oa = 6 * free_idx[e_kf[ea]]
                        for j in range(3):
                            s = 0.0
                            for i in range(6):
                                s += Hpl[ea, i, j] * dx[oa + i]
                            g[j] -= s
                    for j in range(3):
                        d = Hll_inv[p, j, 0] * g[0] + Hll_inv[p, j, 1] * g[1] + Hll_inv[p, j, 2] * g[2]
                        new_points[p, j] += d
                        predicted += d * (lam * d + bl[p, j])
                new_poses = poses.copy()
                for kf in range(poses.shape[0]):
                    f = free_idx[kf]
                    if f >= 0:
                        new_poses[kf] = se3_left_update(dx[6 * f: 6 * f + 6], poses[kf])
                new_cost = _total_cost(new_poses, new_points, e_kf, e_pt, obs, stereo, info, active, delta2, k)
                rho = (cost - new_cost) / predicted
                if rho > 0.0 and np.isfinite(new_cost):
                    alpha = min(1.0 - (2.0 * rho - 1.0) ** 3, 2.0 / 3.0)
                    lam *= max(1.0 / 3.0, alpha)
                    nu = 2.0
                    poses[:] = new_poses
                    points[:] = new_points
                    cost = new_cost
                    improved = True
                    break
            lam *= nu
            nu *= 2.0
        if not improved:
            break
        done += 1
    return done


def point_edges(e_pt: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(pt_start, pt_edges) for solve: edge indices grouped by point, point p's at pt_start[p]:pt_start[p + 1]."""
    pt_edges = np.argsort(e_pt, kind="stable").astype(np.int64)
    pt_start = np.searchsorted(e_pt[pt_edges], np.arange(n_points + 1)).astype(np.int64)
    return pt_start, pt_edges


def warm_up() -> None:
    """Compile (or load from numba's cache) the solver on a tiny problem: compiling takes ~10 s, which must
    not fall on the mapping thread's first keyframe."""
    points = np.array([[0.0, 0.0, 4.0], [1.0, 0.0, 5.0], [0.0, 1.0, 6.0], [1.0, 1.0, 4.5]])
    poses = np.stack([np.eye(4), np.eye(4)])
    poses[1, 0, 3] = -0.2
    e_kf = np.repeat(np.arange(2), 4)
    e_pt = np.tile(np.arange(4), 2)
    stereo = np.zeros(8, np.bool_)
    stereo[::2] = True
    obs = np.zeros((8, 3))
    obs[:, :2] = 300.0
    solve(poses, np.array([-1, 0]), 1, points, e_kf, e_pt, obs, stereo, np.ones(8), np.ones(8, np.bool_),
          np.array([5.991, 7.815]), np.array([500.0, 500.0, 320.0, 240.0, 50.0]), *point_edges(e_pt, 4), 1)
