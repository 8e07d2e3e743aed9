"""Similarity transforms as 4x4 matrices [sR t; 0 1], and their robust estimation from 3D-3D matches.

Loop closing aligns the points a keyframe sees with the same points in the revisited part of the map:
a rigid transform for RGB-D / stereo (metric scale), a similarity for monocular maps (scale drifts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slam.geometry import CHI2_MONO, so3_exp


def sim3(R: np.ndarray, t: np.ndarray, s: float = 1.0) -> np.ndarray:
    S = np.eye(4)
    S[:3, :3] = s * R
    S[:3, 3] = t
    return S


def sim3_scale(S: np.ndarray) -> float:
    return float(np.cbrt(np.linalg.det(S[:3, :3])))


def sim3_inverse(S: np.ndarray) -> np.ndarray:
    s = sim3_scale(S)
    R = S[:3, :3] / s
    out = np.eye(4)
    out[:3, :3] = R.T / s
    out[:3, 3] = -(R.T @ S[:3, 3]) / s
    return out


def sim3_apply(S: np.ndarray, X: np.ndarray) -> np.ndarray:
    return X @ S[:3, :3].T + S[:3, 3]


def umeyama(X: np.ndarray, Y: np.ndarray, with_scale: bool) -> np.ndarray | None:
    """Least-squares S with Y ~ S X (Umeyama 1991); None for degenerate input."""
    if len(X) < 3:
        return None
    mx, my = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - mx, Y - my
    var_x = np.sum(Xc**2) / len(X)
    if var_x < 1e-12:
        return None
    U, D, Vt = np.linalg.svd(Yc.T @ Xc / len(X))
    d = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        d[2] = -1.0
    R = U @ np.diag(d) @ Vt
    s = float(np.sum(D * d) / var_x) if with_scale else 1.0
    if not np.isfinite(s) or s <= 0:
        return None
    return sim3(R, my - s * R @ mx, s)


@dataclass
class AlignmentResult:
    S: np.ndarray  # Y ~ S X
    inliers: np.ndarray  # (N,) bool


def ransac_alignment(X: np.ndarray, Y: np.ndarray, inlier_test, with_scale: bool, iterations: int = 300,
                     min_inliers: int = 20, rng: np.random.Generator | None = None) -> AlignmentResult | None:
    """RANSAC over minimal 3-point Umeyama fits; `inlier_test(S) -> (N,) bool` decides who agrees.

    The winner is refitted on its inliers (twice, re-testing), as ORB-SLAM's Sim3Solver does.
    """
    n = len(X)
    if n < max(3, min_inliers):
        return None
    rng = rng or np.random.default_rng(0)
    best, best_count = None, 0
    for _ in range(iterations):
        pick = rng.choice(n, 3, replace=False)
        S = umeyama(X[pick], Y[pick], with_scale)
        if S is None:
            continue
        count = int(np.count_nonzero(inlier_test(S)))
        if count > best_count:
            best, best_count = S, count
            if count > 0.9 * n:
                break
    if best is None or best_count < min_inliers:
        return None
    inliers = inlier_test(best)
    for _ in range(2):
        S = umeyama(X[inliers], Y[inliers], with_scale)
        if S is None:
            break
        refit = inlier_test(S)
        if np.count_nonzero(refit) < np.count_nonzero(inliers):
            break
        best, inliers = S, refit
    if np.count_nonzero(inliers) < min_inliers:
        return None
    return AlignmentResult(best, inliers)


def refine_similarity(S: np.ndarray, residuals: Callable[[np.ndarray], np.ndarray], with_scale: bool,
                      huber: float = np.sqrt(CHI2_MONO)) -> np.ndarray:
    """S moved to minimise `residuals(S)` (whitened reprojection errors) under a Huber loss.

    A 3D-3D fit weighs every point's depth alike; monocular depths are poor, reprojections are not,
    so the alignment is finished on those (ORB-SLAM's OptimizeSim3). S = [e^w R0, t0 + v, s0 e^sigma].
    """
    s0 = sim3_scale(S)
    R0, t0 = S[:3, :3] / s0, S[:3, 3]

    def compose(x: np.ndarray) -> np.ndarray:
        return sim3(so3_exp(x[:3]) @ R0, t0 + x[3:6], s0 * np.exp(x[6]) if with_scale else s0)

    if len(residuals(S)) < 7:
        return S
    # Imported here, on the first loop candidate's refinement: scipy.optimize adds 35 MB of resident memory
    # (VmRSS after `import slam.runner` 165 -> 130 MB), and most runs (mono, no loop candidate) never get here.
    from scipy.optimize import least_squares

    fit = least_squares(lambda x: residuals(compose(x)), np.zeros(7 if with_scale else 6), loss="huber",
                        f_scale=huber, max_nfev=50)
    return compose(fit.x)
