"""Robust two-view geometry from matches through OpenCV's USAC: essential, fundamental, homography.

MAGSAC++ by default (it marginalises over the noise scale, so the threshold is an upper bound rather than
a value to tune); plain RANSAC is selectable for comparison. Thresholds and confidence come from the
config's `estimation` section. Each function returns None when there is too little data or no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slam.config import EstimationConfig

_TWO_VIEW = {"magsac": cv2.USAC_MAGSAC, "ransac": cv2.RANSAC}


@dataclass
class RelativePose:
    """x2 ~ R x1 + t between two calibrated views (t of unit length: scale is unobservable)."""

    R: np.ndarray  # (3,3)
    t: np.ndarray  # (3,)
    E: np.ndarray  # (3,3) essential matrix
    inliers: np.ndarray  # (N,) bool, inliers of E that also pass the cheirality check


@dataclass
class Model:
    matrix: np.ndarray  # (3,3) fundamental matrix or homography
    inliers: np.ndarray  # (N,) bool


def _pts(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64).reshape(-1, 2)


def _mask(mask, n: int) -> np.ndarray:
    return np.zeros(n, bool) if mask is None else mask.ravel().astype(bool)


def essential(pts1: np.ndarray, pts2: np.ndarray, K: np.ndarray, cfg: EstimationConfig) -> RelativePose | None:
    """Relative pose of view 2 from view 1 (pixels in both, one intrinsic matrix)."""
    p1, p2 = _pts(pts1), _pts(pts2)
    if len(p1) < 5:
        return None
    E, mask = cv2.findEssentialMat(
        p1,
        p2,
        K,
        method=_TWO_VIEW[cfg.method],
        prob=cfg.confidence,
        threshold=cfg.threshold_px,
        maxIters=cfg.max_iterations,
    )
    if E is None or E.shape != (3, 3):
        return None  # none found, or several stacked solutions from a degenerate sample
    inliers = _mask(mask, len(p1))
    _, R, t, pose_mask = cv2.recoverPose(E, p1, p2, K, mask=inliers.astype(np.uint8)[:, None].copy())
    return RelativePose(R, t.ravel() / max(np.linalg.norm(t), 1e-12), E, _mask(pose_mask, len(p1)))


def fundamental(pts1: np.ndarray, pts2: np.ndarray, cfg: EstimationConfig) -> Model | None:
    p1, p2 = _pts(pts1), _pts(pts2)
    if len(p1) < 8:
        return None
    F, mask = cv2.findFundamentalMat(
        p1, p2, _TWO_VIEW[cfg.method], cfg.threshold_px, cfg.confidence, cfg.max_iterations
    )
    if F is None or F.shape != (3, 3):
        return None
    return Model(F, _mask(mask, len(p1)))


def homography(pts1: np.ndarray, pts2: np.ndarray, cfg: EstimationConfig) -> Model | None:
    p1, p2 = _pts(pts1), _pts(pts2)
    if len(p1) < 4:
        return None
    H, mask = cv2.findHomography(
        p1, p2, _TWO_VIEW[cfg.method], cfg.threshold_px, maxIters=cfg.max_iterations, confidence=cfg.confidence
    )
    if H is None:
        return None
    return Model(H, _mask(mask, len(p1)))


def rotation_error_deg(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    cos = (np.trace(R_est.T @ R_gt) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def translation_error_deg(t_est: np.ndarray, t_gt: np.ndarray) -> float:
    """Angle between translation directions, sign-agnostic (as in Jin et al.'s benchmark)."""
    n = np.linalg.norm(t_est) * np.linalg.norm(t_gt)
    if n < 1e-15:
        return 180.0
    cos = abs(float(t_est @ t_gt)) / n
    return float(np.degrees(np.arccos(min(cos, 1.0))))


MAA_THRESHOLDS_DEG = tuple(range(1, 11))  # as in Jin et al.: 1, 2, ..., 10 degrees


def mean_average_accuracy(errors_deg: np.ndarray, thresholds_deg: tuple[float, ...] = MAA_THRESHOLDS_DEG) -> float:
    """Mean over thresholds of the fraction of pairs whose error is below it (mAA)."""
    errors = np.asarray(errors_deg, np.float64)
    if len(errors) == 0:
        return 0.0
    return float(np.mean([(errors < th).mean() for th in thresholds_deg]))
