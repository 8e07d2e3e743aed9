"""Descriptor-distance thresholds for learned features, derived on a synthetic sequence (not a benchmark).

ORB-SLAM matches ORB descriptors under Hamming thresholds TH_HIGH = 100 (search by projection) and
TH_LOW = 50 (new points, fusion). Their counterparts for L2-normalised float descriptors (slam/matching.py
L2_TH_HIGH / L2_TH_LOW) are chosen to keep the same share of TRUE matches: on a rendered sequence with exact
depth and poses, true correspondences come from geometry, the share of ORB's true matches within 100 / 50
gives the quantiles q_high / q_low, and the L2 thresholds are the learned descriptor's true-match distance
quantiles at q_high / q_low.

True match of a keypoint in frame A: project it with A's rendered depth and the ground-truth poses into
frame B (visible: B's depth agrees within 2%); the B keypoint nearest the projection, within `tol_px`
(times scale^octave for pyramid keypoints, whose position is only that precise; only keypoints within one
pyramid level, as ORB-SLAM's search by projection), and mutually so.
Precision: for each true match, the keypoints of B within `window_px` of the projection other than the
true one are wrong candidates; reported is the share of A keypoints whose nearest wrong candidate lies
within each threshold, and the share whose nearest wrong candidate is nearer than the true match.

    python -m slam synth /tmp/synth --frames 60 --trajectory orbit
    PYTHONPATH=. python tools/descriptor_thresholds.py /tmp/synth --superpoint-weights superpoint_v1.pth --xfeat
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slam.config import FeaturesConfig
from slam.features import create_extractor
from slam.features.base import Features
from slam.io.calibration import read_calibration
from slam.trajectory import read_tum

ORB_TH_HIGH, ORB_TH_LOW = 100, 50  # ORB-SLAM's Hamming thresholds (slam/matching.py TH_HIGH / TH_LOW)


@dataclass
class Frame:
    T_wc: np.ndarray
    depth: np.ndarray  # metres, 0 = none
    features: Features


@dataclass
class Distances:
    true: np.ndarray  # descriptor distance of each true match
    nearest_wrong: np.ndarray  # per true match: distance of the nearest wrong candidate in the window (inf: none)


def _listing(root: Path, name: str) -> list[tuple[float, str]]:
    rows = []
    for line in (root / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            t, f = line.split()[:2]
            rows.append((float(t), f))
    return rows


def load_frames(root: Path, extractor, depth_scale: float, stride: int = 1) -> tuple[list[Frame], np.ndarray]:
    """Frames of a synthetic (TUM-layout) sequence whose rgb, depth and ground truth share timestamps."""
    calib = read_calibration(root / "calibration.yaml")
    K = np.array([[calib.fx, 0, calib.cx], [0, calib.fy, calib.cy], [0, 0, 1]], dtype=np.float64) \
        if hasattr(calib, "fx") else np.asarray(calib.K, dtype=np.float64)
    gt = read_tum(root / "groundtruth.txt")
    gt_index = {round(t, 4): i for i, t in enumerate(gt.timestamps)}
    depth_files = {round(t, 4): f for t, f in _listing(root, "depth.txt")}
    frames = []
    for t, f in _listing(root, "rgb.txt")[::stride]:
        key = round(t, 4)
        if key not in gt_index or key not in depth_files:
            continue
        image = cv2.imread(str(root / f), cv2.IMREAD_COLOR)
        depth = cv2.imread(str(root / depth_files[key]), cv2.IMREAD_UNCHANGED).astype(np.float64) / depth_scale
        frames.append(Frame(gt.poses[gt_index[key]], depth, extractor.extract(image)))
    return frames, K


def _descriptor_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise distances (len(a), len(b)): Hamming for uint8 descriptors, L2 for float ones."""
    if a.dtype == np.uint8:
        bits_a = np.unpackbits(a, axis=1).astype(np.float32)
        bits_b = np.unpackbits(b, axis=1).astype(np.float32)
        return bits_a.sum(1)[:, None] + bits_b.sum(1)[None, :] - 2 * bits_a @ bits_b.T
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return np.sqrt(np.maximum(2.0 - 2.0 * a @ b.T, 0.0)) if _unit(a) and _unit(b) else \
        np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)


def _unit(x: np.ndarray) -> bool:
    return bool(len(x) == 0 or np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-3))


def pair_distances(fa: Frame, fb: Frame, K: np.ndarray, scale_factor: float, tol_px: float,
                   window_px: float) -> Distances:
    ka, kb = fa.features.keypoints.astype(np.float64), fb.features.keypoints.astype(np.float64)
    if len(ka) == 0 or len(kb) == 0:
        return Distances(np.zeros(0), np.zeros(0))
    h, w = fa.depth.shape
    ui = np.clip(np.round(ka[:, 0]).astype(int), 0, w - 1)
    vi = np.clip(np.round(ka[:, 1]).astype(int), 0, h - 1)
    z = fa.depth[vi, ui]
    rays = np.linalg.solve(K, np.c_[ka, np.ones(len(ka))].T).T
    X_a = rays * z[:, None]
    T_ba = np.linalg.inv(fb.T_wc) @ fa.T_wc
    X_b = X_a @ T_ba[:3, :3].T + T_ba[:3, 3]
    zb = X_b[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = (X_b @ K.T)[:, :2] / zb[:, None]
    ok = (z > 0) & (zb > 0) & np.all(np.isfinite(proj), axis=1)
    ok &= (proj[:, 0] >= 0) & (proj[:, 0] <= w - 1) & (proj[:, 1] >= 0) & (proj[:, 1] <= h - 1)
    pu = np.clip(np.round(np.nan_to_num(proj[:, 0])).astype(int), 0, w - 1)
    pv = np.clip(np.round(np.nan_to_num(proj[:, 1])).astype(int), 0, h - 1)
    ok &= np.abs(fb.depth[pv, pu] - zb) < 0.02 * zb  # visible in B (not occluded)
    ia = np.flatnonzero(ok)
    if len(ia) == 0:
        return Distances(np.zeros(0), np.zeros(0))
    pix = np.linalg.norm(proj[ia, None, :] - kb[None, :, :], axis=2)  # (n_ok, len(kb)) pixels
    # as ORB-SLAM's search by projection: only keypoints within one pyramid level are candidates
    pix[np.abs(fa.features.octave[ia, None] - fb.features.octave[None, :]) > 1] = np.inf
    nearest_b = pix.argmin(1)
    # tolerance grows with the pyramid level of either keypoint (the position is known to that precision)
    oct_a = fa.features.octave[ia].astype(np.float64)
    oct_b = fb.features.octave[nearest_b].astype(np.float64)
    tol = tol_px * scale_factor ** np.maximum(oct_a, oct_b)
    close = pix[np.arange(len(ia)), nearest_b] <= tol
    nearest_a = np.full(len(kb), -1)  # mutual check: among visible A keypoints, the one projecting nearest each B
    nearest_a[:] = ia[pix.argmin(0)]
    mutual = nearest_a[nearest_b] == ia
    true = close & mutual
    ia_t, ib_t = ia[true], nearest_b[true]
    d = _descriptor_distance(fa.features.descriptors[ia_t], fb.features.descriptors)
    true_d = d[np.arange(len(ia_t)), ib_t]
    wrong = pix[true] <= window_px
    wrong[np.arange(len(ia_t)), ib_t] = False
    nearest_wrong = np.where(wrong, d, np.inf).min(1) if len(ia_t) else np.zeros(0)
    return Distances(true_d, nearest_wrong)


def measure(frames: list[Frame], K: np.ndarray, scale_factor: float, gaps: tuple[int, ...], tol_px: float,
            window_px: float) -> Distances:
    parts = [pair_distances(frames[i], frames[i + g], K, scale_factor, tol_px, window_px)
             for g in gaps for i in range(len(frames) - g)]
    return Distances(np.concatenate([p.true for p in parts]), np.concatenate([p.nearest_wrong for p in parts]))


def describe(name: str, d: Distances, thresholds: dict[str, float]) -> list[str]:
    lines = [f"{name}: {len(d.true)} true matches; true-match distance median {np.median(d.true):.3f}, "
             f"95% {np.quantile(d.true, 0.95):.3f}; nearest wrong candidate nearer than the true match: "
             f"{np.mean(d.nearest_wrong < d.true):.1%}"]
    for label, th in thresholds.items():
        lines.append(f"  {label} {th:.3f}: true matches kept {np.mean(d.true <= th):.1%}, "
                     f"a wrong candidate within it {np.mean(d.nearest_wrong <= th):.1%}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sequence", type=Path, help="folder written by `slam synth` (TUM layout, exact depth)")
    parser.add_argument("--superpoint-weights", default=None)
    parser.add_argument("--xfeat", action="store_true", help="also measure XFeat")
    parser.add_argument("--gaps", default="1,3,5", help="frame gaps of the pairs")
    parser.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    parser.add_argument("--tol-px", type=float, default=1.5)
    parser.add_argument("--window-px", type=float, default=20.0, help="wrong candidates within this of the projection")
    parser.add_argument("--depth-scale", type=float, default=5000.0)
    parser.add_argument("--n-features", type=int, default=1000)
    args = parser.parse_args(argv)
    gaps = tuple(int(g) for g in args.gaps.split(","))

    def run(cfg: FeaturesConfig) -> Distances:
        extractor = create_extractor(cfg)
        frames, K = load_frames(args.sequence, extractor, args.depth_scale, args.stride)
        return measure(frames, K, extractor.scale_factor, gaps, args.tol_px, args.window_px)

    orb = run(FeaturesConfig(type="orb", n_features=args.n_features))
    q_high, q_low = np.mean(orb.true <= ORB_TH_HIGH), np.mean(orb.true <= ORB_TH_LOW)
    out = describe("orb (Hamming)", orb, {"TH_HIGH": ORB_TH_HIGH, "TH_LOW": ORB_TH_LOW})
    out.append(f"q_high = {q_high:.3f}, q_low = {q_low:.3f}")
    learned = []
    if args.superpoint_weights:
        learned.append(("superpoint", FeaturesConfig(type="superpoint", n_features=args.n_features,
                                                     weights=args.superpoint_weights, device="cpu")))
    if args.xfeat:
        learned.append(("xfeat", FeaturesConfig(type="xfeat", n_features=args.n_features, device="cpu")))
    for name, cfg in learned:
        d = run(cfg)
        high, low = np.quantile(d.true, q_high), np.quantile(d.true, q_low)
        out += describe(f"{name} (L2)", d, {"L2 at q_high": high, "L2 at q_low": low})
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
