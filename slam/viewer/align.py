"""Ground truth in the map's frame, for drawing beside the estimate.

Live: the ground-truth pose at the first tracked frame is made to coincide with that frame's estimate (the map's
origin), so drift shows as the two curves parting. At the end of a run and in `slam view`: a least-squares
rigid fit (Umeyama, as the ATE uses), so the picture matches the reported error.
"""

from __future__ import annotations

import numpy as np

from slam.geometry import se3_inverse
from slam.trajectory import Trajectory

MAX_DIFF_S = 0.02  # timestamp association tolerance, as `slam eval`


def nearest(timestamps: np.ndarray, query: np.ndarray, max_diff: float = MAX_DIFF_S) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into query, into timestamps) of query times with a timestamp within max_diff."""
    if len(timestamps) == 0 or len(query) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(timestamps, kind="stable")
    t = timestamps[order]
    right = np.clip(np.searchsorted(t, query), 0, len(t) - 1)
    left = np.clip(right - 1, 0, len(t) - 1)
    pick = np.where(np.abs(t[left] - query) <= np.abs(t[right] - query), left, right)
    ok = np.abs(t[pick] - query) <= max_diff
    return np.flatnonzero(ok), order[pick[ok]]


def align_to_first_pose(gt: Trajectory, timestamp: float, T_wc: np.ndarray) -> np.ndarray | None:
    """Ground-truth centres moved so the ground-truth pose at `timestamp` equals the estimate T_wc there."""
    q, g = nearest(gt.timestamps, np.array([timestamp]))
    if len(q) == 0:
        return None
    T = T_wc @ se3_inverse(gt.poses[g[0]])
    return gt.positions @ T[:3, :3].T + T[:3, 3]


def align_rigid(gt: Trajectory, est_timestamps: np.ndarray, est_positions: np.ndarray) -> np.ndarray | None:
    """Ground-truth centres under the rigid motion that best fits them onto the estimate (None: too few pairs)."""
    q, g = nearest(gt.timestamps, est_timestamps)
    if len(q) < 3:
        return None
    R, t = umeyama_rigid(gt.positions[g], est_positions[q])
    return gt.positions @ R.T + t


def umeyama_rigid(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R, t minimising sum |R src_i + t - dst_i|^2 (no scale)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    H = (dst - mu_d).T @ (src - mu_s)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ D @ Vt
    return R, mu_d - R @ mu_s
