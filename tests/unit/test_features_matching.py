"""Brute-force matchers against a loop reference; USAC estimators on data with 30% outliers."""

import cv2
import numpy as np
import pytest

from slam.config import EstimationConfig
from slam.features.estimation import (
    essential,
    fundamental,
    homography,
    mean_average_accuracy,
    rotation_error_deg,
    translation_error_deg,
)
from slam.features.matchers import distance_matrix, match_brute_force


def _reference(d1, d2, ratio, mutual):
    """Loop over pairs: the matches the definition asks for."""

    def dist(a, b):
        if a.dtype == np.uint8:
            return int(np.unpackbits(a ^ b).sum())
        return float(np.linalg.norm(a.astype(np.float64) - b))

    D = np.array([[dist(a, b) for b in d2] for a in d1])
    out = []
    for i in range(len(d1)):
        order = np.argsort(D[i], kind="stable")
        j = order[0]
        if ratio is not None and not D[i, j] < ratio * D[i, order[1]]:
            continue
        if mutual and np.argmin(D[:, j]) != i:
            continue
        out.append((i, j))
    return out


def _float_descriptors(rng, n, d=64):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["binary", "float"])
@pytest.mark.parametrize("ratio,mutual", [(None, True), (0.8, True), (0.8, False)])
def test_brute_force_agrees_with_a_loop_reference(kind, ratio, mutual):
    rng = np.random.default_rng(5)
    if kind == "binary":
        d2 = rng.integers(0, 256, (70, 32), dtype=np.uint8)
        d1 = d2[rng.permutation(70)[:50]].copy()
        flips = rng.integers(0, 32, (50, 6))
        for row, cols in enumerate(flips):
            d1[row, cols] ^= np.uint8(0b1001)  # a few bits changed: near duplicates
    else:
        d2 = _float_descriptors(rng, 70)
        d1 = d2[rng.permutation(70)[:50]] + rng.normal(0, 0.08, (50, 64)).astype(np.float32)
        d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
        d1[:10] = _float_descriptors(rng, 10)  # some with no true partner
    got = match_brute_force(d1, d2, ratio=ratio, mutual=mutual)
    assert list(zip(got.idx1.tolist(), got.idx2.tolist())) == _reference(d1, d2, ratio, mutual)
    assert len(got) > 20


def test_distance_matrix_hamming_and_l2():
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 256, (5, 32), dtype=np.uint8), rng.integers(0, 256, (7, 32), dtype=np.uint8)
    expected = np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(axis=2)
    np.testing.assert_array_equal(distance_matrix(a, b), expected)
    fa, fb = _float_descriptors(rng, 5), _float_descriptors(rng, 7)
    np.testing.assert_allclose(distance_matrix(fa, fb), np.linalg.norm(fa[:, None] - fb[None], axis=2), atol=1e-5)


K = np.array([[520.0, 0, 320], [0, 520.0, 240], [0, 0, 1]])


def _rotation(rx, ry, rz):
    return cv2.Rodrigues(np.radians([rx, ry, rz]))[0]


def _two_views(rng, n=300, outliers=0.3):
    """Points in front of two cameras, pixels with 0.5 px noise; a share replaced by random pixels."""
    X = rng.uniform([-2, -1.5, 3], [2, 1.5, 8], (n, 3))
    R, t = _rotation(3, -8, 2), np.array([0.5, 0.05, 0.1])
    x1 = (X / X[:, 2:]) @ K.T
    X2 = X @ R.T + t
    x2 = (X2 / X2[:, 2:]) @ K.T
    x1, x2 = x1[:, :2] + rng.normal(0, 0.5, (n, 2)), x2[:, :2] + rng.normal(0, 0.5, (n, 2))
    bad = rng.random(n) < outliers
    x2[bad] = rng.uniform([0, 0], [640, 480], (bad.sum(), 2))
    return X, x1, x2, R, t, bad


@pytest.mark.parametrize("method", ["magsac", "ransac"])
def test_essential_recovers_a_known_relative_pose_with_30_percent_outliers(method):
    rng = np.random.default_rng(7)
    _, x1, x2, R, t, bad = _two_views(rng)
    pose = essential(x1, x2, K, EstimationConfig(method=method))
    assert rotation_error_deg(pose.R, R) < 0.5
    assert translation_error_deg(pose.t, t) < 2.0
    assert pose.t @ t > 0  # the cheirality check picked the right sign
    # Nearly all inliers found, few outliers accepted.
    assert np.mean(pose.inliers[~bad]) > 0.9 and np.mean(pose.inliers[bad]) < 0.05


def test_fundamental_and_homography_with_30_percent_outliers():
    rng = np.random.default_rng(8)
    _, x1, x2, _, _, bad = _two_views(rng)
    model = fundamental(x1, x2, EstimationConfig())
    lines = np.c_[x1, np.ones(len(x1))] @ model.matrix.T
    dist = np.abs(np.sum(lines * np.c_[x2, np.ones(len(x2))], axis=1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert np.median(dist[~bad]) < 1.0
    assert np.mean(model.inliers[~bad]) > 0.85
    # A plane: pixels related by a homography.
    H = np.array([[1.02, 0.03, 12.0], [-0.02, 0.98, -7.0], [1e-5, 2e-5, 1.0]])
    p1 = rng.uniform([0, 0], [640, 480], (200, 2))
    p2 = cv2.perspectiveTransform(p1[:, None], H)[:, 0] + rng.normal(0, 0.3, (200, 2))
    wrong = rng.random(200) < 0.3
    p2[wrong] = rng.uniform([0, 0], [640, 480], (wrong.sum(), 2))
    est = homography(p1, p2, EstimationConfig(threshold_px=2.0))
    corners = np.array([[[0.0, 0.0]], [[640.0, 0.0]], [[640.0, 480.0]], [[0.0, 480.0]]])
    assert np.abs(cv2.perspectiveTransform(corners, est.matrix) - cv2.perspectiveTransform(corners, H)).max() < 2.0
    assert np.mean(est.inliers[~wrong]) > 0.95 and np.mean(est.inliers[wrong]) < 0.05


def test_too_little_data_gives_none():
    cfg = EstimationConfig()
    pts = np.zeros((3, 2))
    assert essential(pts, pts, K, cfg) is None
    assert fundamental(pts, pts, cfg) is None
    assert homography(pts, pts, cfg) is None


def test_mean_average_accuracy_over_1_to_10_degrees():
    # Errors 0.5, 3.5 and 20 degrees: under every threshold, under 4..10 (7 of 10), under none.
    assert mean_average_accuracy(np.array([0.5, 3.5, 20.0])) == pytest.approx((1.0 + 0.7 + 0.0) / 3)
    assert mean_average_accuracy(np.array([])) == 0.0
    assert translation_error_deg(np.array([1.0, 0, 0]), np.array([-2.0, 0, 0])) == pytest.approx(0.0)
