"""Matching kernels on generated data: projection search, epipolar search, stereo rows."""

import cv2
import numpy as np
import pytest

from slam.features.orb import OrbExtractor
from slam.matching import (
    KeypointGrid,
    _hamming,
    as_words,
    match_epipolar,
    match_stereo,
    medoid_descriptors,
    nearest_matches,
    search_by_projection,
)


def _random_descriptors(rng, n):
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def _textured_image(seed=0, shape=(240, 320)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 4, shape[1] // 4), dtype=np.uint8)
    image = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(image, (3, 3), 0)


def test_hamming_matches_bit_count():
    rng = np.random.default_rng(1)
    a, b = _random_descriptors(rng, 50), _random_descriptors(rng, 50)
    expected = np.unpackbits(a ^ b, axis=1).sum(axis=1)
    # The kernel every binary matcher uses (through `_distance`), on uint64 words as they pass it.
    assert np.array_equal([_hamming(wa, wb) for wa, wb in zip(as_words(a), as_words(b))], expected)


def test_search_by_projection_finds_the_keypoint_near_each_projection():
    rng = np.random.default_rng(2)
    n = 300
    kp = rng.uniform(0, [640, 480], (n, 2)).astype(np.float32)
    desc = _random_descriptors(rng, n)
    octave = np.zeros(n, np.int64)
    # Points project 2 px from their keypoint with a slightly corrupted descriptor.
    uv = kp + rng.normal(0, 1.0, (n, 2))
    noisy = desc.copy()
    noisy[:, 0] ^= 0b101
    grid = KeypointGrid.build(kp, 640, 480)
    pt, idx = search_by_projection(uv, np.full(n, 7.0), octave, noisy, kp, octave, desc, grid, np.zeros(n, bool))
    assert len(pt) >= 0.95 * n
    assert np.mean(pt == idx) > 0.99


def test_search_by_projection_respects_radius_taken_and_octave():
    rng = np.random.default_rng(3)
    kp = np.array([[100.0, 100.0], [300.0, 300.0], [500.0, 100.0]], np.float32)
    desc = _random_descriptors(rng, 3)
    octave = np.array([0, 0, 4])
    grid = KeypointGrid.build(kp, 640, 480)
    uv = np.array([[120.0, 100.0], [300.0, 300.0], [500.0, 100.0]])
    taken = np.array([False, True, False])
    pt, idx = search_by_projection(uv, np.full(3, 7.0), np.zeros(3, np.int64), desc, kp, octave, desc, grid, taken)
    # 20 px away (outside the radius), taken, and four octaves off: nothing matches.
    assert len(pt) == 0


def test_each_keypoint_goes_to_its_closest_descriptor():
    rng = np.random.default_rng(4)
    kp = np.array([[50.0, 50.0]], np.float32)
    desc = _random_descriptors(rng, 1)
    worse = desc.copy()
    worse[0, :4] ^= 0xFF
    better = desc.copy()
    better[0, 0] ^= 0x01
    grid = KeypointGrid.build(kp, 100, 100)
    uv = np.array([[50.0, 50.0], [51.0, 50.0]])
    pt, idx = search_by_projection(uv, np.full(2, 5.0), np.zeros(2, np.int64), np.vstack([worse, better]), kp,
                                   np.zeros(1, np.int64), desc, grid, np.zeros(1, bool))
    assert pt.tolist() == [1] and idx.tolist() == [0]


def test_epipolar_matching_rejects_matches_off_the_line():
    rng = np.random.default_rng(5)
    n = 200
    desc = _random_descriptors(rng, n)
    kp1 = rng.uniform(0, 640, (n, 2))
    # A pure horizontal translation: epipolar lines are image rows.
    F = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    kp2 = kp1.copy()
    kp2[:, 0] -= rng.uniform(5, 40, n)
    off = np.arange(n) % 4 == 0
    kp2[off, 1] += 25.0
    i1, i2 = match_epipolar(desc, desc, kp1, kp2, np.zeros(n, np.int64), np.ones(n, bool), np.ones(n, bool), F,
                            np.ones(8))
    assert np.array_equal(i1, i2)
    assert set(i1.tolist()) == set(np.flatnonzero(~off).tolist())


@pytest.mark.parametrize("seed", range(6))
def test_epipolar_matching_is_the_nearest_descriptor_within_the_band(seed):
    """Against a brute-force reading of the rule: for each free keypoint of view 1, among the free keypoints of
    view 2 within 3.84 sigma^2 of its epipolar line and within th_low, the nearest descriptor (ties to the lower
    index) if it passes the ratio test; a keypoint of view 2 claimed twice goes to the nearer (then lower) one.
    Lines of every slope, near-horizontal and near-vertical ones, keypoints just outside the image."""
    rng = np.random.default_rng(seed)
    n1, n2, th_low, ratio = 300, 280, 80, (1.0, 0.8)[seed % 2]
    F = rng.normal(size=(3, 3))
    if seed % 3 < 2:
        F[seed % 3] *= 1e-3  # near-vertical, then near-horizontal lines
    kp1 = rng.uniform(0, [640, 480], (n1, 2))
    d1 = _random_descriptors(rng, n1)
    kp2 = rng.uniform(-2, [642, 482], (n2, 2))
    d2 = _random_descriptors(rng, n2)
    for i in range(200):  # most of view 1 has a counterpart near its line, with a close descriptor
        a, b, c = F @ [kp1[i, 0], kp1[i, 1], 1.0]
        if abs(b) > abs(a):
            u = rng.uniform(0, 640)
            kp2[i] = (u, -(a * u + c) / b + rng.normal(0, 1.5))
        else:
            v = rng.uniform(0, 480)
            kp2[i] = (-(b * v + c) / a + rng.normal(0, 1.5), v)
        d2[i] = d1[i] ^ ((rng.random(32) < 0.1) * rng.integers(1, 256, 32)).astype(np.uint8)
    octave2 = rng.integers(0, 8, n2)
    sigma2 = 1.44 ** np.arange(8)
    free1, free2 = rng.random(n1) < 0.9, rng.random(n2) < 0.9
    distance = np.unpackbits(d1[:, None, :] ^ d2[None, :, :], axis=2).sum(axis=2)
    best = {}
    for i in np.flatnonzero(free1):
        a, b, c = F @ [kp1[i, 0], kp1[i, 1], 1.0]
        near = (a * kp2[:, 0] + b * kp2[:, 1] + c) ** 2 / (a * a + b * b) < 3.84 * sigma2[octave2]
        candidates = np.flatnonzero(free2 & near & (distance[i] <= th_low))
        if len(candidates) == 0:
            continue
        order = candidates[np.lexsort((candidates, distance[i, candidates]))]
        second = distance[i, order[1]] if len(order) > 1 else 1 << 30
        if distance[i, order[0]] <= ratio * second:
            j = int(order[0])
            if j not in best or distance[i, j] < distance[best[j], j]:
                best[j] = int(i)
    expected = sorted((i, j) for j, i in best.items())
    i1, i2 = match_epipolar(d1, d2, kp1, kp2, octave2, free1, free2, F, sigma2, th_low, ratio)
    assert list(zip(i1.tolist(), i2.tolist())) == expected
    assert len(expected) > 100


def test_projection_search_gives_a_keypoint_claimed_twice_to_the_nearer_then_the_first_point():
    rng = np.random.default_rng(3)
    kp_desc = _random_descriptors(rng, 2)
    kp = np.array([[100.0, 100.0], [300.0, 200.0]])
    far = kp_desc[0].copy()
    far[:2] ^= 0xFF  # 16 bits from keypoint 0's descriptor
    near = kp_desc[0].copy()
    near[0] ^= 0x0F  # 4 bits
    # points 0 and 2 tie on keypoint 0 (the first wins), point 1 is nearer in descriptor than both, point 3
    # alone on keypoint 1
    desc = np.stack([far, near, far, kp_desc[1]])
    uv = np.array([[101.0, 100.0], [99.0, 101.0], [100.0, 99.0], [300.0, 201.0]])
    grid = KeypointGrid.build(kp, 640, 480)
    pt, kpi = search_by_projection(uv, np.full(4, 5.0), np.zeros(4, np.int64), desc, kp, np.zeros(2, np.int64),
                                   kp_desc, grid, np.zeros(2, bool), ratio=1.0)
    assert pt.tolist() == [1, 3] and kpi.tolist() == [0, 1]
    desc[1] = far  # now all three tie: the first point keeps keypoint 0
    pt, kpi = search_by_projection(uv, np.full(4, 5.0), np.zeros(4, np.int64), desc, kp, np.zeros(2, np.int64),
                                   kp_desc, grid, np.zeros(2, bool), ratio=1.0)
    assert pt.tolist() == [0, 3] and kpi.tolist() == [0, 1]


def test_stereo_matching_recovers_a_known_disparity():
    left = _textured_image(6, (240, 400))
    shift = 12.4
    M = np.float32([[1, 0, -shift], [0, 1, 0]])
    right = cv2.warpAffine(left, M, (400, 240), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    orb = OrbExtractor(500)
    fl, fr = orb.extract(left), orb.extract(right)
    scales = 1.2 ** np.arange(8)
    u_right = match_stereo(fl, fr, left, right, scales, 300.0)
    found = u_right >= 0
    assert found.mean() > 0.5
    disparity = fl.keypoints[found, 0] - u_right[found]
    assert abs(np.median(disparity) - shift) < 0.2
    assert np.mean(np.abs(disparity - shift) < 1.0) > 0.9
    # Each keypoint is refined on its own pyramid level, to a fraction of that level's pixel (measured: median
    # error at most 0.08 level px at every octave, shifts 12.4 and 3.7 px).
    for octave in np.unique(fl.octave[found]):
        at = fl.octave[found] == octave
        if at.sum() >= 10:
            assert abs(np.median(disparity[at]) - shift) < 0.2 * scales[octave], octave


def test_binary_medoid_matches_a_brute_force_reference_with_ties():
    """Each group's descriptor of least median Hamming distance to the others, the first on a tie; groups of 1 to
    40 descriptors drawn from a few originals so that many distances and medians tie."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 41, 60)
    originals = _random_descriptors(rng, 5)
    desc = originals[rng.integers(0, 5, sizes.sum())]
    flip = rng.random(desc.shape) < 0.05
    desc = np.where(flip, desc ^ rng.integers(1, 256, desc.shape, dtype=np.uint8), desc).astype(np.uint8)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    got = medoid_descriptors(desc, starts, ends)
    bits = np.unpackbits(desc, axis=1).astype(np.int64)
    for g, s, e in zip(got.tolist(), starts.tolist(), ends.tolist()):
        D = np.abs(bits[s:e, None] - bits[None, s:e]).sum(axis=2)
        medians = np.sort(D, axis=1)[:, (e - s - 1) // 2]
        assert g == s + int(np.argmin(medians))


def _knn_reference(query, train, max_distance, ratio):
    """OpenCV's brute-force kNN (k=2) read in Python: Lowe's ratio and the bound, then for each train row the
    closest query (the first of equals), in train order."""
    norm = cv2.NORM_HAMMING if query.dtype == np.uint8 else cv2.NORM_L2
    pairs = [(m[0].queryIdx, m[0].trainIdx, m[0].distance) for m in cv2.BFMatcher(norm).knnMatch(query, train, k=2)
             if len(m) == 2 and m[0].distance < ratio * m[1].distance and m[0].distance <= max_distance]
    best = {}
    for q, t, d in pairs:
        if t not in best or d < best[t][1]:
            best[t] = (q, d)
    t = np.array(sorted(best), np.int64)
    return np.array([best[k][0] for k in t.tolist()], np.int64), t


@pytest.mark.parametrize("seed", range(4))
def test_nearest_matches_agree_with_opencv_knn(seed):
    rng = np.random.default_rng(seed)
    # Few set bits: many equal distances, so ties in the nearest, the second nearest and between queries.
    train = np.packbits(rng.random((300, 256)) < 0.04, axis=1)
    query = np.concatenate([train[rng.integers(0, 300, 150)], np.packbits(rng.random((150, 256)) < 0.04, axis=1)])
    query[:150] ^= np.packbits(rng.random((150, 256)) < 0.01, axis=1)  # near copies of train rows
    for max_distance, ratio in [(50, 0.75), (8, 0.9), (100, 1.0)]:
        got = nearest_matches(query, train, max_distance, ratio)
        want = _knn_reference(query, train, max_distance, ratio)
        assert len(want[0]) > 20
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    # Float descriptors (learned features): L2, no ties in random data.
    train_f = rng.normal(size=(200, 64)).astype(np.float32)
    query_f = train_f[rng.integers(0, 200, 120)] + rng.normal(0, 0.3, (120, 64)).astype(np.float32)
    got = nearest_matches(query_f, train_f, 10.0, 0.8)
    want = _knn_reference(query_f, train_f, 10.0, 0.8)
    assert len(want[0]) > 50
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
