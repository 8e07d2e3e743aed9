"""Rigid-body geometry, two-view triangulation and reprojection errors (numpy, vectorised).

Conventions: T_cw (4x4) maps world points into the camera frame, T_wc is its inverse. A twist
xi = (omega(3), rho(3)) puts rotation first, as g2o's SE3Quat does, and updates poses on the left:
T <- se3_exp(xi) @ T. Observations are left-image pixels (u, v) plus u_right, the right-image x
coordinate (u - bf/depth); u_right < 0 marks an observation without depth (monocular).
The one-twist exponential is compiled (numba) because optimisers call it every step.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from slam.camera import Camera

# Chi-square 95% quantiles, as ORB-SLAM: 2 dof for (u, v), 3 dof for (u, v, u_right).
CHI2_MONO = 5.991
CHI2_STEREO = 7.815

_SMALL_ANGLE = 1e-4  # below this (rad) Taylor series replace the closed forms, which lose precision


def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices (..., 3, 3) of vectors (..., 3): skew(a) @ b == cross(a, b)."""
    v = np.asarray(v, dtype=float)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    o = np.zeros_like(x)
    return np.stack([o, -z, y, z, o, -x, -y, x, o], axis=-1).reshape(v.shape[:-1] + (3, 3))


def se3_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms (..., 4, 4) without a general matrix inverse."""
    T = np.asarray(T, dtype=float)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ T[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply one rigid transform (4, 4) to points (N, 3)."""
    return np.asarray(X, dtype=float) @ T[:3, :3].T + T[:3, 3]


def _exp_coefficients(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sin(t)/t, (1-cos t)/t^2 and (t - sin t)/t^3, with series near zero."""
    small = theta < _SMALL_ANGLE
    t = np.where(small, 1.0, theta)  # placeholder avoids 0/0 in the branch np.where discards
    t2 = theta * theta
    a = np.where(small, 1.0 - t2 / 6.0, np.sin(t) / t)
    b = np.where(small, 0.5 - t2 / 24.0, (1.0 - np.cos(t)) / (t * t))
    c = np.where(small, 1.0 / 6.0 - t2 / 120.0, (t - np.sin(t)) / (t * t * t))
    return a, b, c


def so3_exp(phi: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from rotation vectors (..., 3) (Rodrigues)."""
    phi = np.asarray(phi, dtype=float)
    a, b, _ = _exp_coefficients(np.linalg.norm(phi, axis=-1))
    K = skew(phi)
    return np.eye(3) + a[..., None, None] * K + b[..., None, None] * (K @ K)


def _left_jacobian(omega: np.ndarray) -> np.ndarray:
    """SO(3) left Jacobian V(omega): the translation part of se3_exp is V @ rho."""
    _, b, c = _exp_coefficients(np.linalg.norm(omega, axis=-1))
    K = skew(omega)
    return np.eye(3) + b[..., None, None] * K + c[..., None, None] * (K @ K)


@njit(cache=True, nogil=True)
def se3_exp_single(xi: np.ndarray) -> np.ndarray:
    """se3_exp of one twist (6,), compiled: iterative optimisers call it every step."""
    wx, wy, wz = xi[0], xi[1], xi[2]
    theta = np.sqrt(wx * wx + wy * wy + wz * wz)
    t2 = theta * theta
    if theta < _SMALL_ANGLE:
        a, b, c = 1.0 - t2 / 6.0, 0.5 - t2 / 24.0, 1.0 / 6.0 - t2 / 120.0
    else:
        a, b, c = np.sin(theta) / theta, (1.0 - np.cos(theta)) / t2, (theta - np.sin(theta)) / (t2 * theta)
    # K = skew(w), K^2 = w w^T - theta^2 I; written out (numba's matmul would need SciPy's BLAS).
    w = xi[:3]
    K = np.array([[0.0, -wz, wy], [wz, 0.0, -wx], [-wy, wx, 0.0]])
    T = np.eye(4)
    for i in range(3):
        for j in range(3):
            k2 = w[i] * w[j] - (t2 if i == j else 0.0)
            T[i, j] += a * K[i, j] + b * k2
            T[i, 3] += ((1.0 if i == j else 0.0) + b * K[i, j] + c * k2) * xi[3 + j]
    return T


@njit(cache=True, nogil=True)
def se3_left_update(dx: np.ndarray, T: np.ndarray) -> np.ndarray:
    """exp(dx) @ T for a 4x4 rigid transform, without BLAS (numba's matmul would need SciPy's)."""
    E = se3_exp_single(dx)
    out = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            for m in range(4):
                out[i, j] += E[i, m] * T[m, j]
    return out


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """Transforms (..., 4, 4) from twists (..., 6) ordered (omega, rho)."""
    xi = np.asarray(xi, dtype=float)
    if xi.shape == (6,):
        return se3_exp_single(xi)
    omega, rho = xi[..., :3], xi[..., 3:]
    T = np.zeros(xi.shape[:-1] + (4, 4))
    T[..., :3, :3] = so3_exp(omega)
    T[..., :3, 3] = (_left_jacobian(omega) @ rho[..., None])[..., 0]
    T[..., 3, 3] = 1.0
    return T


def _rotation_angle(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angle in [0, pi] and w = sin(angle) * axis; atan2 keeps precision at both ends."""
    w = 0.5 * np.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], axis=-1
    )
    cos = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    return np.arctan2(np.linalg.norm(w, axis=-1), cos), w


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3) of rotation matrices (..., 3, 3); exact near 0 and near pi."""
    R = np.asarray(R, dtype=float)
    theta, w = _rotation_angle(R)
    sin = np.sin(theta)
    near_pi = np.cos(theta) < -0.9
    # Generic branch: w = sin(theta) * axis.
    scale = np.where(theta < _SMALL_ANGLE, 1.0 + theta * theta / 6.0, theta / np.where(near_pi | (sin == 0), 1.0, sin))
    generic = scale[..., None] * w
    # Near pi, w loses the axis; the symmetric part (1 - cos) a a^T keeps it.
    sym = 0.5 * (R + np.swapaxes(R, -1, -2)) - np.cos(theta)[..., None, None] * np.eye(3)
    col = np.argmax(np.diagonal(sym, axis1=-2, axis2=-1), axis=-1)
    axis = np.take_along_axis(sym, col[..., None, None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):  # the discarded branch may be 0/0
        axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    axis = np.where((np.sum(axis * w, axis=-1) < 0)[..., None], -axis, axis)
    return np.where(near_pi[..., None], theta[..., None] * axis, generic)


def rotation_angle_deg(R: np.ndarray) -> np.ndarray | float:
    """Rotation angle in degrees of rotation matrices (..., 3, 3)."""
    theta, _ = _rotation_angle(np.asarray(R, dtype=float))
    return np.degrees(theta)


def triangulate_linear(T1_cw: np.ndarray, T2_cw: np.ndarray, xn1: np.ndarray, xn2: np.ndarray) -> np.ndarray:
    """World points (N, 3) from two views by linear (DLT) triangulation.

    xn1, xn2: (N, 2) normalised image coordinates (K^-1 applied). Rows whose homogeneous solution
    lies at infinity (parallel rays) come back non-finite: callers check np.isfinite.
    """
    xn1 = np.asarray(xn1, dtype=float).reshape(-1, 2)
    xn2 = np.asarray(xn2, dtype=float).reshape(-1, 2)
    P1, P2 = T1_cw[:3], T2_cw[:3]
    A = np.stack(
        [
            xn1[:, 0, None] * P1[2] - P1[0],
            xn1[:, 1, None] * P1[2] - P1[1],
            xn2[:, 0, None] * P2[2] - P2[0],
            xn2[:, 1, None] * P2[2] - P2[1],
        ],
        axis=1,
    )
    Xh = np.linalg.svd(A)[2][:, -1]  # right singular vector of the smallest singular value
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / Xh[:, 3:]
    X[np.abs(Xh[:, 3]) < 1e-12] = np.nan
    return X


def reprojection_chi2(
    T_cw: np.ndarray,
    X_w: np.ndarray,
    uv: np.ndarray,
    u_right: np.ndarray,
    inv_sigma2: np.ndarray,
    camera: Camera,
) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square (N,) of each observation and the point depths (N,) in the camera.

    T_cw is one pose (4, 4) or one per observation (N, 4, 4). Observations with u_right >= 0 add
    the right-image residual (3 dof), others have 2 dof. A point at or behind the camera
    (depth <= 0) gets chi2 = inf so no threshold accepts it.
    """
    T_cw = np.asarray(T_cw, dtype=float)
    if T_cw.ndim == 3:
        Xc = np.einsum("nij,nj->ni", T_cw[:, :3, :3], X_w) + T_cw[:, :3, 3]
    else:
        Xc = transform_points(T_cw, X_w)
    z = Xc[:, 2]
    front = z > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iz = np.where(front, 1.0 / np.where(front, z, 1.0), 0.0)
        u = camera.fx * Xc[:, 0] * iz + camera.cx
        v = camera.fy * Xc[:, 1] * iz + camera.cy
        e2 = (u - uv[:, 0]) ** 2 + (v - uv[:, 1]) ** 2
        er = np.where(u_right >= 0, u - camera.bf * iz - u_right, 0.0)
        chi2 = (e2 + er * er) * inv_sigma2
    return np.where(front, chi2, np.inf), z


def chi2_thresholds(u_right: np.ndarray) -> np.ndarray:
    """Per-observation outlier threshold: stereo (3 dof) where u_right >= 0, else mono (2 dof)."""
    return np.where(np.asarray(u_right) >= 0, CHI2_STEREO, CHI2_MONO)
