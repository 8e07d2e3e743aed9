"""The SLAM matching kernels with float (L2) descriptors: same behaviour as the binary kernels, in L2."""

import cv2
import numpy as np

from slam.features.base import Features
from slam.map import Map
from slam.matching import (
    L2_TH_HIGH,
    TH_HIGH,
    KeypointGrid,
    match_epipolar,
    match_stereo,
    medoid_descriptors,
    search_by_projection,
    thresholds,
)


def _unit(rng, n, d=256):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _perturbed(rng, desc, sigma):
    noisy = desc + rng.normal(0, sigma, desc.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def test_thresholds_follow_the_descriptor_type():
    assert thresholds(np.uint8).high == TH_HIGH and isinstance(thresholds(np.uint8).stereo, int)
    assert thresholds(np.float32).high == L2_TH_HIGH
    assert Map(256, np.float32, 1.0, 1).match_thresholds == thresholds(np.float32)


def test_search_by_projection_with_l2_descriptors():
    rng = np.random.default_rng(2)
    n = 300
    kp = rng.uniform(0, [640, 480], (n, 2)).astype(np.float32)
    desc = _unit(rng, n)
    octave = np.zeros(n, np.int64)
    uv = kp + rng.normal(0, 1.0, (n, 2))
    grid = KeypointGrid.build(kp, 640, 480)
    pt, idx = search_by_projection(
        uv, np.full(n, 7.0), octave, _perturbed(rng, desc, 0.02), kp, octave, desc, grid, np.zeros(n, bool), L2_TH_HIGH
    )
    assert len(pt) >= 0.95 * n and np.mean(pt == idx) > 0.99
    # Unrelated descriptors (L2 distance ~1.41 between random unit vectors) are refused by the threshold.
    pt, _ = search_by_projection(
        uv, np.full(n, 7.0), octave, _unit(rng, n), kp, octave, desc, grid, np.zeros(n, bool), L2_TH_HIGH
    )
    assert len(pt) == 0


def test_each_keypoint_goes_to_its_closest_l2_descriptor():
    rng = np.random.default_rng(4)
    kp = np.array([[50.0, 50.0]], np.float32)
    desc = _unit(rng, 1)
    far, near = _perturbed(rng, desc, 0.05), _perturbed(rng, desc, 0.01)
    grid = KeypointGrid.build(kp, 640, 480)
    uv = np.array([[51.0, 50.0], [49.0, 50.0]])
    pt, idx = search_by_projection(
        uv,
        np.full(2, 5.0),
        np.zeros(2, np.int64),
        np.vstack([far, near]),
        kp,
        np.zeros(1, np.int64),
        desc,
        grid,
        np.zeros(1, bool),
        L2_TH_HIGH,
    )
    assert pt.tolist() == [1] and idx.tolist() == [0]


def test_epipolar_matching_with_l2_descriptors():
    rng = np.random.default_rng(5)
    n = 200
    kp1 = rng.uniform(0, [640, 480], (n, 2))
    kp2 = kp1 + np.c_[rng.uniform(5, 40, n), np.zeros(n)]  # pure horizontal motion: epipolar lines are rows
    desc1 = _unit(rng, n)
    desc2 = _perturbed(rng, desc1, 0.02)
    F = np.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    i1, i2 = match_epipolar(
        desc1, desc2, kp1, kp2, np.zeros(n, np.int64), np.ones(n, bool), np.ones(n, bool), F, np.ones(1), 0.7
    )
    assert len(i1) >= 0.95 * n and np.all(i1 == i2)
    # Off the epipolar line (shifted 10 px down), nothing matches.
    i1, _ = match_epipolar(
        desc1, desc2, kp1, kp2 + [0, 10], np.zeros(n, np.int64), np.ones(n, bool), np.ones(n, bool), F, np.ones(1), 0.7
    )
    assert len(i1) == 0


def test_stereo_matching_with_l2_descriptors():
    rng = np.random.default_rng(6)
    small = rng.integers(0, 256, (60, 80)).astype(np.float32)
    left = cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    disparity = 12
    right = np.zeros_like(left)
    right[:, :-disparity] = left[:, disparity:]
    n = 60
    kpl = np.c_[rng.uniform(40, 280, n), rng.uniform(20, 220, n)].astype(np.float32)
    kpl = np.round(kpl)
    kpr = kpl - [disparity, 0]
    desc = _unit(rng, n)
    zeros = np.zeros(n, np.float32)
    u_right = match_stereo(
        Features(kpl, np.zeros(n, np.int32), zeros, zeros, desc),
        Features(kpr.astype(np.float32), np.zeros(n, np.int32), zeros, zeros, _perturbed(rng, desc, 0.02)),
        left, right, np.ones(1), 300.0, thresholds(np.float32).stereo,
    )
    found = u_right >= 0
    assert found.mean() > 0.9
    np.testing.assert_allclose(u_right[found], kpr[found, 0], atol=0.5)


def test_medoid_of_l2_descriptors_matches_a_brute_force_reference():
    rng = np.random.default_rng(7)
    desc = _unit(rng, 30, 32)
    starts, ends = np.array([0, 7, 20]), np.array([7, 20, 30])
    got = medoid_descriptors(desc, starts, ends)
    for g, s, e in zip(got, starts, ends):
        group = desc[s:e].astype(np.float64)
        D = np.linalg.norm(group[:, None] - group[None], axis=2)
        medians = np.sort(D, axis=1)[:, (e - s - 1) // 2]
        assert g == s + int(np.argmin(medians))
