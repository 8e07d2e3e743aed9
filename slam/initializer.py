"""Monocular two-view initialisation (ORB-SLAM's Initializer, with OpenCV USAC doing the robust fits).

A homography and a fundamental matrix are fitted to the same matches; each is scored by its symmetric
transfer / epipolar chi-square as in ORB-SLAM, and the homography wins when it explains nearly half of
the combined score (planar or low-parallax scenes). The winner's motion hypotheses are triangulated and
the one with clearly the most points in front of both cameras is kept. Low parallax (pure rotation) is
refused: it gives no depth, so no map.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slam.geometry import triangulate_linear
from slam.matching import TH_LOW, KeypointGrid, rotation_consistent, search_by_projection

CHI2_1DOF = 3.841  # epipolar distance (1 dof), 95%
CHI2_2DOF = 5.991  # transfer error (2 dof), 95%
# A fundamental matrix fits a plane too, so an exactly planar scene scores only ~0.47 here; ORB-SLAM2's 0.40
# took KITTI's road-dominated first views (0.41-0.44) for planes and picked a wrong motion.
HOMOGRAPHY_SCORE_RATIO = 0.45
MIN_PARALLAX_COS = 0.99998  # rays closer than ~0.36 deg carry no depth


@dataclass(frozen=True)
class TwoViewSettings:
    min_matches: int = 100  # fewer: pick a new reference frame
    min_points: int = 50  # triangulated points needed to accept a reconstruction
    min_parallax_deg: float = 1.0
    search_radius_px: float = 100.0


@dataclass
class TwoView:
    """A reconstruction from two views: x2 = R x1 + t (|t| = 1), points in view 1's frame."""

    model: str  # "homography" or "essential"
    R: np.ndarray
    t: np.ndarray
    good: np.ndarray  # (M,) bool over the matches: triangulated and kept
    xyz: np.ndarray  # (M,3) view-1 coordinates, valid where good
    parallax_deg: float
    homography_ratio: float  # SH / (SH + SF)


def reconstruct_two_view(pts1: np.ndarray, pts2: np.ndarray, K: np.ndarray, sigma2: np.ndarray | None = None,
                         settings: TwoViewSettings = TwoViewSettings()) -> tuple[TwoView | None, str]:
    """Relative pose and points from matched pixels (M,2) of two views; (None, reason) when refused."""
    pts1 = np.ascontiguousarray(pts1, dtype=np.float64)
    pts2 = np.ascontiguousarray(pts2, dtype=np.float64)
    if len(pts1) < max(settings.min_points, 8):
        return None, f"{len(pts1)} matches"
    sigma2 = np.ones(len(pts1)) if sigma2 is None else np.asarray(sigma2, dtype=np.float64)
    H = _fit(cv2.findHomography, pts1, pts2, np.sqrt(CHI2_2DOF))
    F = _fit(cv2.findFundamentalMat, pts1, pts2, np.sqrt(CHI2_1DOF))
    if H is None and F is None:
        return None, "no model fits"
    score_h, inl_h = _score_homography(H, pts1, pts2, sigma2) if H is not None else (0.0, None)
    score_f, inl_f = _score_fundamental(F, pts1, pts2, sigma2) if F is not None else (0.0, None)
    ratio = score_h / max(score_h + score_f, 1e-12)
    if ratio > HOMOGRAPHY_SCORE_RATIO:
        model, inliers = "homography", inl_h
        hypotheses = _homography_motions(H, K)
    else:
        model, inliers = "essential", inl_f
        hypotheses = _essential_motions(K.T @ F @ K)
    view = _select_motion(hypotheses, pts1, pts2, K, sigma2, inliers, settings)
    if isinstance(view, str):
        return None, f"{model}: {view}"
    view.model, view.homography_ratio = model, float(ratio)
    return view, "ok"


def _fit(estimator, pts1: np.ndarray, pts2: np.ndarray, threshold_px: float) -> np.ndarray | None:
    if estimator is cv2.findHomography:
        M, _ = estimator(pts1, pts2, cv2.USAC_MAGSAC, threshold_px, maxIters=2000, confidence=0.999)
    else:
        M, _ = estimator(pts1, pts2, cv2.USAC_MAGSAC, threshold_px, 0.999, 2000)
    if M is None or M.shape != (3, 3) or not np.all(np.isfinite(M)):
        return None
    return M


def _h(p: np.ndarray) -> np.ndarray:
    return np.concatenate([p, np.ones((len(p), 1))], axis=1)


def _score_homography(H, pts1, pts2, sigma2) -> tuple[float, np.ndarray]:
    """ORB-SLAM's CheckHomography: transfer error both ways, each side scored against the 2-dof bound."""
    try:
        H_inv = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return 0.0, np.zeros(len(pts1), bool)
    score = np.zeros(len(pts1))
    inlier = np.ones(len(pts1), bool)
    for M, src, dst in ((H, pts1, pts2), (H_inv, pts2, pts1)):
        proj = _h(src) @ M.T
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = proj[:, :2] / proj[:, 2:]
        chi2 = np.sum((uv - dst) ** 2, axis=1) / sigma2
        chi2 = np.where(np.isfinite(chi2), chi2, np.inf)
        ok = chi2 < CHI2_2DOF
        score += np.where(ok, CHI2_2DOF - chi2, 0.0)
        inlier &= ok
    return float(score.sum()), inlier


def _score_fundamental(F, pts1, pts2, sigma2) -> tuple[float, np.ndarray]:
    """ORB-SLAM's CheckFundamental: distance to the epipolar line both ways, 1-dof bound, 2-dof score."""
    score = np.zeros(len(pts1))
    inlier = np.ones(len(pts1), bool)
    for M, src, dst in ((F, pts1, pts2), (F.T, pts2, pts1)):
        lines = _h(src) @ M.T
        num = np.sum(lines * _h(dst), axis=1) ** 2
        den = lines[:, 0] ** 2 + lines[:, 1] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            chi2 = num / den / sigma2
        chi2 = np.where(np.isfinite(chi2), chi2, np.inf)
        ok = chi2 < CHI2_1DOF
        score += np.where(ok, CHI2_2DOF - chi2, 0.0)
        inlier &= ok
    return float(score.sum()), inlier


def _essential_motions(E: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    R1, R2, t = cv2.decomposeEssentialMat(E)
    t = t.ravel() / max(np.linalg.norm(t), 1e-12)
    return [(R1, t), (R1, -t), (R2, t), (R2, -t)]


def _homography_motions(H: np.ndarray, K: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    _, Rs, ts, _ = cv2.decomposeHomographyMat(H, K)
    motions = []
    for R, t in zip(Rs, ts):
        norm = np.linalg.norm(t)
        if norm > 1e-9:  # a zero translation is the pure-rotation solution: no depth from it
            motions.append((R, t.ravel() / norm))
    return motions


def _select_motion(hypotheses, pts1, pts2, K, sigma2, inliers, settings: TwoViewSettings) -> TwoView | str:
    """Triangulate under each motion; keep the clear winner by points in front with small reprojection error."""
    if not hypotheses:
        return "no motion hypothesis"
    trials = [_check_motion(R, t, pts1, pts2, K, sigma2, inliers) for R, t in hypotheses]
    counts = np.array([int(np.count_nonzero(good)) for good, _, _ in trials])
    order = np.argsort(-counts, kind="stable")
    best = int(order[0])
    n_best = counts[best]
    n_inliers = int(np.count_nonzero(inliers))
    needed = max(int(0.9 * n_inliers), settings.min_points)
    if n_best < needed:
        return f"{n_best} of {n_inliers} inliers triangulate (need {needed})"
    # A rival motion puts some of the points behind a camera; only when that is under 10% of them is the
    # choice too close to call (ORB-SLAM's 0.75 refuses most planar scenes, whose two solutions both fit).
    similar = int(np.count_nonzero(counts > 0.9 * n_best))
    if similar > 1:
        return "ambiguous motion"
    good, xyz, parallax = trials[best]
    if parallax < settings.min_parallax_deg:
        return f"parallax {parallax:.2f} deg (rotation only?)"
    R, t = hypotheses[best]
    return TwoView("", R, t, good & _enough_parallax(R, t, xyz), xyz, parallax, 0.0)


def _check_motion(R, t, pts1, pts2, K, sigma2, inliers):
    """ORB-SLAM's CheckRT: (points with depth in both views and small reprojection error, xyz, parallax)."""
    Kinv = np.linalg.inv(K)
    xn1 = (_h(pts1) @ Kinv.T)[:, :2]
    xn2 = (_h(pts2) @ Kinv.T)[:, :2]
    T1 = np.eye(4)
    T2 = np.eye(4)
    T2[:3, :3], T2[:3, 3] = R, t
    with np.errstate(invalid="ignore", divide="ignore"):
        xyz = triangulate_linear(T1, T2, xn1, xn2)
        finite = np.all(np.isfinite(xyz), axis=1)
        xyz = np.where(finite[:, None], xyz, 0.0)
        z1 = xyz[:, 2]
        x2 = xyz @ R.T + t
        z2 = x2[:, 2]
        cos = _parallax_cos(xyz, -R.T @ t)
        uv1 = (xyz / np.where(z1 > 0, z1, 1.0)[:, None]) @ K.T
        uv2 = (x2 / np.where(z2 > 0, z2, 1.0)[:, None]) @ K.T
        e1 = np.sum((uv1[:, :2] - pts1) ** 2, axis=1)
        e2 = np.sum((uv2[:, :2] - pts2) ** 2, axis=1)
    good = inliers & finite & (z1 > 0) & (z2 > 0) & (e1 < 4 * sigma2) & (e2 < 4 * sigma2)
    if not np.any(good):
        return good, xyz, 0.0
    parallax_cos = np.sort(cos[good])
    # ORB-SLAM takes the 50th smallest parallax, so a few far outliers cannot pass a rotation as motion.
    pick = parallax_cos[min(50, len(parallax_cos) - 1)]
    return good, xyz, float(np.degrees(np.arccos(np.clip(pick, -1.0, 1.0))))


def _parallax_cos(xyz: np.ndarray, center2: np.ndarray) -> np.ndarray:
    r1 = xyz
    r2 = xyz - center2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(r1 * r2, axis=1) / (np.linalg.norm(r1, axis=1) * np.linalg.norm(r2, axis=1))


def _enough_parallax(R, t, xyz) -> np.ndarray:
    cos = _parallax_cos(xyz, -R.T @ t)
    return np.isfinite(cos) & (cos < MIN_PARALLAX_COS)


# ---- matching for initialisation ----------------------------------------------------------------------

def match_for_initialization(kp1: np.ndarray, oct1: np.ndarray, desc1: np.ndarray, angle1: np.ndarray,
                             prev_uv: np.ndarray, kp2: np.ndarray, oct2: np.ndarray, desc2: np.ndarray,
                             angle2: np.ndarray, grid2: KeypointGrid, radius: float,
                             max_distance: float = TH_LOW) -> tuple[np.ndarray, np.ndarray]:
    """ORB-SLAM's SearchForInitialization: each reference keypoint's best match, same scale, within
    `radius` of where it was last seen, ratio 0.9, then only the dominant rotations kept."""
    radii = np.full(len(kp1), radius)
    i1, i2 = search_by_projection(prev_uv, radii, oct1, desc1, kp2, oct2, desc2, grid2,
                                  np.zeros(len(kp2), bool), max_distance, ratio=0.9, octave_tol=0)
    keep = rotation_consistent(angle1[i1], angle2[i2])
    return i1[keep], i2[keep]
