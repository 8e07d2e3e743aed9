"""Descriptor matching under geometric constraints: by projection, along epipolar lines, along stereo rows.

The inner loops are numba kernels over plain arrays, compiled once per descriptor type: binary
descriptors (uint8) are compared as uint64 words with a SWAR popcount (Hamming distance), float ones
(L2-normalised, float32) by Euclidean distance. Thresholds are in the descriptor's own distance:
`thresholds(dtype)` gives ORB-SLAM's Hamming values or their counterparts for learned descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numba as nb
import numpy as np
from numba.core import types
from numba.extending import overload

from slam.features.base import Features

TH_HIGH = 100  # ORB-SLAM's Hamming thresholds
TH_LOW = 50
# L2 counterparts for unit-length float descriptors (distances lie in [0, 2]). 0.8 / 0.7 were chosen on TUM
# teddy, the benchmark they are reported on. The non-benchmark derivation (tools/descriptor_thresholds.py: keep
# the share of TRUE matches ORB-SLAM's 100 / 50 keep for ORB, on `slam synth --frames 60 --trajectory orbit`,
# pairs 1/3/5 frames apart): ORB keeps 91.7% / 67.0% of 96k true matches; SuperPoint's quantiles there are
# 0.311 / 0.250 (median 0.226), XFeat's 0.283 / 0.235. Wrong keypoints within 20 px are nearer than the
# threshold for 74.5% / 31.2% of ORB's true matches, 0.0% / 0.0% of SuperPoint's, 2.9% / 0.6% of XFeat's.
# The rendered images are cleaner than real ones (SuperPoint on teddy: 95% of true matches within 0.63), and
# 0.31 / 0.25 lose SuperPoint tracking on teddy at frame 41 of 193, so the values stay until they are derived
# on real images with ground truth that are not a benchmark.
L2_TH_HIGH = 0.8
L2_TH_LOW = 0.7


@dataclass(frozen=True)
class Thresholds:
    high: float  # loose: search by projection in tracking
    low: float  # strict: new points by epipolar search, fusion
    stereo: float  # left-right matching along rows


def thresholds(dtype) -> Thresholds:
    """Matching thresholds for descriptors of this dtype (uint8: Hamming; float: L2)."""
    if np.dtype(dtype) == np.uint8:
        return Thresholds(TH_HIGH, TH_LOW, (TH_HIGH + TH_LOW) // 2)
    return Thresholds(L2_TH_HIGH, L2_TH_LOW, (L2_TH_HIGH + L2_TH_LOW) / 2)


@nb.njit(cache=True, inline="always")
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@nb.njit(cache=True, inline="always")
def _hamming(a, b):
    d = 0
    for k in range(a.shape[0]):
        d += _popcount64(a[k] ^ b[k])
    return d


@nb.njit(cache=True, inline="always")
def _l2(a, b):
    s = 0.0
    for k in range(a.shape[0]):
        d = a[k] - b[k]
        s += d * d
    return np.sqrt(s)


def _distance(a, b):
    """Descriptor distance inside kernels: resolved at compile time by the overload below."""
    raise NotImplementedError


@overload(_distance, inline="always")
def _distance_overload(a, b):
    if isinstance(a.dtype, types.Float):
        return lambda a, b: _l2(a, b)
    return lambda a, b: _hamming(a, b)


def as_words(descriptors: np.ndarray) -> np.ndarray:
    """(N,32) uint8 binary descriptors viewed as (N,4) uint64 words for fast Hamming distances."""
    return np.ascontiguousarray(descriptors).view(np.uint64)


def as_kernel(descriptors: np.ndarray) -> np.ndarray:
    """Descriptors as the kernels take them: uint64 words (binary) or contiguous float32 rows."""
    if descriptors.dtype == np.uint8:
        return as_words(descriptors)
    return np.ascontiguousarray(descriptors, dtype=np.float32)


@nb.njit(cache=True, nogil=True)
def _group_distances(words, s, m, dist):
    """dist[:m, :m]: distances between rows s..s+m of words, each pair computed once."""
    for i in range(m):
        dist[i, i] = 0
        for j in range(i + 1, m):
            d = _distance(words[s + i], words[s + j])
            dist[i, j] = d
            dist[j, i] = d


def _row_median(row, m, scratch):
    """The ((m - 1) // 2)-th smallest of row[:m] inside kernels: resolved at compile time by the overload below."""
    raise NotImplementedError


@overload(_row_median, inline="always")
def _row_median_overload(row, m, scratch):
    if isinstance(row.dtype, types.Integer):
        # Hamming distances are small integers: counted, not sorted (sorting each row afresh took 7% of a sync
        # teddy RGB-D run; 1000 groups of 40: 48 -> 6.5 ms, same choices). scratch: one count per distance.
        def by_counting(row, m, scratch):
            scratch[:] = 0
            for j in range(m):
                scratch[row[j]] += 1
            seen, med = 0, 0
            while seen + scratch[med] <= (m - 1) // 2:
                seen += scratch[med]
                med += 1
            return med
        return by_counting

    def by_sorting(row, m, scratch):  # scratch: at least m values
        part = scratch[:m]
        part[:] = row[:m]
        part.sort()
        return part[(m - 1) // 2]
    return by_sorting


@nb.njit(cache=True, nogil=True)
def _medoids(words, starts, ends, dist, scratch):
    """Per group, the row of least median distance to the group (the first on a tie); dist: (longest, longest)."""
    out = np.empty(starts.shape[0], np.int64)
    for g in range(starts.shape[0]):
        s, m = starts[g], ends[g] - starts[g]
        _group_distances(words, s, m, dist)
        best, best_i = np.inf, s
        for i in range(m):
            med = _row_median(dist[i], m, scratch)
            if med < best:
                best, best_i = med, s + i
        out[g] = best_i
    return out


def medoid_descriptors(descriptors: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Row index, within each group [start, end), of the descriptor with the least median distance to the rest."""
    words = as_kernel(descriptors)
    starts, ends = starts.astype(np.int64), ends.astype(np.int64)
    longest = int((ends - starts).max()) if len(starts) else 0
    if words.dtype == np.uint64:  # Hamming: integer distances, counted per value
        dist, scratch = np.empty((longest, longest), np.int64), np.zeros(64 * words.shape[1] + 1, np.int64)
    else:
        dist, scratch = np.empty((longest, longest)), np.empty(longest)
    return _medoids(words, starts, ends, dist, scratch)


@dataclass
class KeypointGrid:
    """Keypoints bucketed in square cells for radius queries."""

    cell: float
    cols: int
    rows: int
    start: np.ndarray  # (cols*rows+1,) offsets into items
    items: np.ndarray  # keypoint indices sorted by cell

    @staticmethod
    def build(keypoints: np.ndarray, width: int, height: int, cell: float = 32.0) -> KeypointGrid:
        cols = int(np.ceil(width / cell)) + 1
        rows = int(np.ceil(height / cell)) + 1
        cx = np.clip((keypoints[:, 0] // cell).astype(np.int64), 0, cols - 1)
        cy = np.clip((keypoints[:, 1] // cell).astype(np.int64), 0, rows - 1)
        cell_id = cy * cols + cx
        items = np.argsort(cell_id, kind="stable").astype(np.int64)
        start = np.searchsorted(cell_id[items], np.arange(cols * rows + 1)).astype(np.int64)
        return KeypointGrid(cell, cols, rows, start, items)


@nb.njit(cache=True, nogil=True)
def _search_projection(uv, radius, pred_octave, words, kp, kp_octave, kp_words, taken,
                       cell, cols, rows, start, items, th_high, ratio, octave_tol):
    m = uv.shape[0]
    match = np.full(m, -1, np.int64)
    dist_out = np.full(m, np.inf)
    for i in range(m):
        u, v, r = uv[i, 0], uv[i, 1], radius[i]
        x0 = max(int((u - r) // cell), 0)
        x1 = min(int((u + r) // cell), cols - 1)
        y0 = max(int((v - r) // cell), 0)
        y1 = min(int((v + r) // cell), rows - 1)
        best, best2, best_idx = 1 << 30, 1 << 30, -1
        best_oct, best2_oct = -1, -1
        for cy in range(y0, y1 + 1):
            for cx in range(x0, x1 + 1):
                c = cy * cols + cx
                for s in range(start[c], start[c + 1]):
                    j = items[s]
                    if taken[j]:
                        continue
                    if octave_tol >= 0 and abs(kp_octave[j] - pred_octave[i]) > octave_tol:
                        continue
                    du = kp[j, 0] - u
                    dv = kp[j, 1] - v
                    if du * du + dv * dv > r * r:
                        continue
                    d = _distance(words[i], kp_words[j])
                    if d < best:
                        best2, best2_oct = best, best_oct
                        best, best_idx, best_oct = d, j, kp_octave[j]
                    elif d < best2:
                        best2, best2_oct = d, kp_octave[j]
        if best <= th_high:
            # Lowe's ratio only between candidates of the same scale, as ORB-SLAM does.
            if best_oct == best2_oct and best > ratio * best2:
                continue
            match[i] = best_idx
            dist_out[i] = best
    return match, dist_out


def search_by_projection(uv: np.ndarray, radius: np.ndarray, pred_octave: np.ndarray, descriptors: np.ndarray,
                         kp: np.ndarray, kp_octave: np.ndarray, kp_descriptors: np.ndarray, grid: KeypointGrid,
                         taken: np.ndarray, th_high: float = TH_HIGH, ratio: float = 0.9,
                         octave_tol: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """For each projected point, the best free keypoint within its radius; each keypoint used at most once.

    Returns (point index, keypoint index) pairs. `octave_tol` < 0 disables the scale check. `th_high` is in
    the descriptors' distance (see `thresholds`).
    """
    if len(uv) == 0 or len(kp) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    match, dist = _search_projection(
        np.ascontiguousarray(uv, dtype=np.float64), np.ascontiguousarray(radius, dtype=np.float64),
        np.ascontiguousarray(pred_octave, dtype=np.int64), as_kernel(descriptors),
        np.ascontiguousarray(kp, dtype=np.float64), np.ascontiguousarray(kp_octave, dtype=np.int64),
        as_kernel(kp_descriptors), np.ascontiguousarray(taken, dtype=np.bool_), grid.cell, grid.cols, grid.rows,
        grid.start, grid.items, th_high, ratio, octave_tol,
    )
    return _unique_best(match, dist)


@nb.njit(cache=True, nogil=True)
def counting_sort(items, keys, n_keys):
    """items ordered by keys (0 <= key < n_keys), stably: a counting sort, for small integer keys (ORB scores,
    covisibility counts)."""
    start = np.zeros(n_keys + 1, np.int64)
    for k in keys:
        start[k + 1] += 1
    for k in range(n_keys):
        start[k + 1] += start[k]
    out = np.empty(items.shape[0], np.int64)
    for j in range(items.shape[0]):
        out[start[keys[j]]] = items[j]
        start[keys[j]] += 1
    return out


@nb.njit(cache=True, nogil=True)
def _nearest(q_words, t_words, max_distance, ratio):
    """For each query row its nearest train row (the first of equals), kept when under max_distance and
    ratio x the second nearest distance; -1 otherwise. Returns (train index, distance) per query."""
    n = q_words.shape[0]
    match = np.full(n, -1, np.int64)
    dist = np.full(n, np.inf)
    for i in range(n):
        d1, d2, j1 = np.inf, np.inf, -1
        for j in range(t_words.shape[0]):
            d = _distance(q_words[i], t_words[j])
            if d < d1:
                d1, d2, j1 = d, d1, j
            elif d < d2:
                d2 = d
        if d1 < ratio * d2 and d1 <= max_distance:
            match[i] = j1
            dist[i] = d1
    return match, dist


@nb.njit(cache=True, nogil=True)
def _closest_claimants(match, dist, n_targets):
    """For each target claimed in match (-1: none), the claimant with the smallest distance, the first of equals;
    -1 for a target nobody claims."""
    owner = np.full(n_targets, -1, np.int64)
    for i in range(match.shape[0]):
        j = match[i]
        if j >= 0 and (owner[j] < 0 or dist[i] < dist[owner[j]]):
            owner[j] = i
    return owner


@nb.njit(cache=True, nogil=True)
def _best_query_per_train(match, dist, n_train):
    """(query, train) pairs keeping, for each train row, its closest query, in train order."""
    owner = _closest_claimants(match, dist, n_train)
    t = np.flatnonzero(owner >= 0)
    return owner[t], t


def nearest_matches(query: np.ndarray, train: np.ndarray, max_distance: float,
                    ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force nearest neighbours with Lowe's ratio test and a distance bound, one query per train row:
    (query indices, train indices) in train order."""
    match, dist = _nearest(as_kernel(query), as_kernel(train), float(max_distance), float(ratio))
    return _best_query_per_train(match, dist, len(train))


@nb.njit(cache=True, nogil=True)
def _unique_best(match, dist):
    """Keep, for each keypoint claimed by several points, the point with the smallest distance (the first of
    equals). Returns (point index, keypoint index) pairs in point order. (Was a stable argsort and np.unique.)"""
    n_kp = 0
    for j in match:
        n_kp = max(n_kp, j + 1)
    owner = _closest_claimants(match, dist, n_kp)
    keep = np.array([i for i in range(match.shape[0]) if match[i] >= 0 and owner[match[i]] == i], np.int64)
    return keep, match[keep]


@nb.njit(cache=True, nogil=True)
def _match_epipolar(words1, words2, kp1, kp2, oct2, free1, free2, F, sigma2, th_low, ratio,
                    cell, cols, rows, start, items, u_min, v_min):
    """For each free keypoint of view 1, the free keypoint of view 2 nearest in descriptor within th_low and
    within 3.84 sigma^2 of its epipolar line (ties to the first in index order). Only keypoints of view 2 in the
    grid cells (KeypointGrid: start, items) along the line are looked at, in index order: all of view 2 was tried
    before, 2000 x 2000 on KITTI (new points 62 ms per keyframe on KITTI 06). u_min, v_min: the smallest
    coordinates of view 2's keypoints, at most 0 (the first cells hold those below 0)."""
    n1, n2 = words1.shape[0], words2.shape[0]
    match = np.full(n1, -1, np.int64)
    dist_out = np.full(n1, np.inf)
    if n2 == 0:
        return match, dist_out
    widest = 0.0
    for s in sigma2:
        widest = max(widest, s)
    reach = np.sqrt(3.84 * widest)
    candidates = np.empty(n2, np.int64)
    for i in range(n1):
        if not free1[i]:
            continue
        x, y = kp1[i, 0], kp1[i, 1]
        a = F[0, 0] * x + F[0, 1] * y + F[0, 2]
        b = F[1, 0] * x + F[1, 1] * y + F[1, 2]
        c = F[2, 0] * x + F[2, 1] * y + F[2, 2]
        norm = a * a + b * b
        if norm < 1e-30:
            continue
        # Cells the band |a u + b v + c| < reach |(a, b)| crosses, walked along the line's longer extent (a margin of
        # 1 px for rounding).
        m = 0
        along_u = abs(b) >= abs(a)
        n_steps, n_across = (cols, rows) if along_u else (rows, cols)
        p, q = (a, b) if along_u else (b, a)
        half = reach * np.sqrt(norm) / abs(q) + 1.0
        for s in range(n_steps):
            first = (u_min if along_u else v_min) if s == 0 else s * cell  # the first cells hold what is below 0
            e0, e1 = -(p * first + c) / q, -(p * (s + 1) * cell + c) / q
            lo = min(max(int(np.floor((min(e0, e1) - half) / cell)), 0), n_across - 1)
            hi = min(max(int(np.floor((max(e0, e1) + half) / cell)), 0), n_across - 1)
            for t in range(lo, hi + 1):
                k = t * cols + s if along_u else s * cols + t
                for item in range(start[k], start[k + 1]):
                    j = items[item]
                    if not free2[j]:
                        continue
                    num = a * kp2[j, 0] + b * kp2[j, 1] + c
                    if num * num / norm < 3.84 * sigma2[oct2[j]]:
                        candidates[m] = j
                        m += 1
        found = np.sort(candidates[:m])
        best, best2, best_idx = 1 << 30, 1 << 30, -1
        for j in found:
            d = _distance(words1[i], words2[j])
            if d > th_low or d >= best2:
                continue
            if d < best:
                best2 = best
                best, best_idx = d, j
            else:
                best2 = d
        if best_idx >= 0 and best <= ratio * best2:
            match[i] = best_idx
            dist_out[i] = best
    return match, dist_out


def match_epipolar(desc1: np.ndarray, desc2: np.ndarray, kp1: np.ndarray, kp2: np.ndarray, octave2: np.ndarray,
                   free1: np.ndarray, free2: np.ndarray, F21: np.ndarray, level_sigma2: np.ndarray,
                   th_low: float = TH_LOW, ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Match free keypoints of two views whose descriptors agree and whose positions satisfy x2' F21 x1 = 0.

    Returns index pairs (i1, i2), one-to-one.
    """
    kp2 = np.ascontiguousarray(kp2, np.float64)
    far = kp2.max(axis=0, initial=0.0)
    grid = KeypointGrid.build(kp2, int(far[0]) + 1, int(far[1]) + 1)
    near = kp2.min(axis=0, initial=0.0)
    match, dist = _match_epipolar(
        as_kernel(desc1), as_kernel(desc2), np.ascontiguousarray(kp1, np.float64), kp2,
        np.ascontiguousarray(octave2, np.int64), np.ascontiguousarray(free1, np.bool_),
        np.ascontiguousarray(free2, np.bool_), np.ascontiguousarray(F21, np.float64),
        np.ascontiguousarray(level_sigma2, np.float64), th_low, ratio,
        grid.cell, grid.cols, grid.rows, grid.start, grid.items, float(near[0]), float(near[1]),
    )
    return _unique_best(match, dist)


@nb.njit(cache=True, nogil=True)
def _match_stereo(kpl, octl, wordsl, kpr, octr, wordsr, row_start, row_items, scales, min_disp, max_disp, th,
                  left, right, pyr_off, pyr_w, pyr_h, half_win, search):
    n = kpl.shape[0]
    u_right = np.full(n, -1.0)
    dist_out = np.full(n, np.inf)
    win, span = 2 * half_win + 1, 2 * (half_win + search + 1) + 1
    patch = np.empty((win, win), np.int32)
    strip = np.empty((win, span), np.int32)
    costs = np.empty(2 * search + 3)
    for i in range(n):
        v = kpl[i, 1]
        r = 2.0 * scales[octl[i]]
        y0 = max(int(np.floor(v - r)), 0)
        y1 = min(int(np.ceil(v + r)), row_start.shape[0] - 2)
        u = kpl[i, 0]
        best, best_j = np.inf, -1
        for y in range(y0, y1 + 1):
            for s in range(row_start[y], row_start[y + 1]):
                j = row_items[s]
                if abs(octr[j] - octl[i]) > 1:
                    continue
                disp = u - kpr[j, 0]
                if disp < min_disp or disp > max_disp:
                    continue
                d = _distance(wordsl[i], wordsr[j])
                if d <= th and d < best:
                    best, best_j = d, j
        if best_j < 0:
            continue
        # Sub-pixel refinement as ORB-SLAM: sum of absolute differences along the row at the left keypoint's
        # pyramid level (an 11x11 window there covers the keypoint's own scale), then a parabola. Measured
        # against the same refinement at full resolution: KITTI 06 0.118 -> 0.078 m sync, 0.104 -> 0.079 m
        # threaded (median of 5), synthetic stereo 4.39 -> 4.04 mm sync, although on a pure synthetic shift
        # full resolution is the more precise (0.08 vs 0.20 px mean error).
        lvl = octl[i]
        sc = scales[lvl]
        off, lw, lh = pyr_off[lvl], pyr_w[lvl], pyr_h[lvl]
        ul, vl = int(round(u / sc)), int(round(v / sc))
        ur0 = int(round(kpr[best_j, 0] / sc))
        if vl - half_win < 0 or vl + half_win >= lh or ul - half_win < 0 or ul + half_win >= lw:
            continue
        if ur0 - half_win - search - 1 < 0 or ur0 + half_win + search + 1 >= lw:
            continue
        # The left patch (less its centre) and the right rows it slides over, read once as integers; the costs
        # are exact integer sums, as the float ones were (3.7 -> 1.4 ms per KITTI pair, same refinements).
        center = np.int32(left[off + vl * lw + ul])
        for dy in range(win):
            row = off + (vl + dy - half_win) * lw
            for dx in range(win):
                patch[dy, dx] = np.int32(left[row + ul + dx - half_win]) - center
            for dx in range(span):
                strip[dy, dx] = np.int32(right[row + ur0 + dx - half_win - search - 1])
        for k in range(2 * search + 3):
            shift = strip[half_win, k + half_win]  # the right centre pixel at this offset
            total = np.int32(0)
            for dy in range(win):
                for dx in range(win):
                    total += abs(strip[dy, k + dx] - shift - patch[dy, dx])
            costs[k] = np.float64(total)
        kbest = 1
        for k in range(1, 2 * search + 2):
            if costs[k] < costs[kbest]:
                kbest = k
        c0, c1, c2 = costs[kbest - 1], costs[kbest], costs[kbest + 1]
        denom = 2.0 * (c0 + c2 - 2.0 * c1)
        delta = 0.0 if abs(denom) < 1e-12 else (c0 - c2) / denom
        if delta < -1.0 or delta > 1.0:
            continue
        # The left keypoint sits at (ul + (u / sc - ul)) on its level; its match at the refined right position.
        ur = sc * (ur0 + (kbest - search - 1) + delta + (u / sc - ul))
        disp = u - ur
        if disp < min_disp or disp > max_disp:
            continue
        if disp <= 0:
            disp, ur = 0.01, u - 0.01
        u_right[i] = ur
        dist_out[i] = best
    return u_right, dist_out


def match_stereo(left: Features, right: Features, left_image: np.ndarray, right_image: np.ndarray,
                 scales: np.ndarray, fx: float, th: float = (TH_HIGH + TH_LOW) // 2,
                 half_win: int = 5, search: int = 5, pyramids: StereoPyramids | None = None) -> np.ndarray:
    """Right-image x coordinate of each left keypoint on a rectified pair (-1 where none is found).

    Candidates lie within 2 scale units of the left keypoint's row, at a neighbouring octave, with a
    disparity between 0 and fx (depth no closer than one baseline); the best descriptor match is then
    refined to sub-pixel precision by patch correlation along the row, on the left keypoint's pyramid level
    (`pyramids`: stereo_pyramids of the two images, made here when not given).
    """
    if len(left) == 0 or len(right) == 0:
        return np.full(len(left), -1.0)
    height = left_image.shape[0]
    rows = np.clip(np.round(right.keypoints[:, 1]).astype(np.int64), 0, height - 1)
    row_items = np.argsort(rows, kind="stable").astype(np.int64)
    row_start = np.searchsorted(rows[row_items], np.arange(height + 1)).astype(np.int64)
    if pyramids is None:
        pyramids = stereo_pyramids(left_image, right_image, scales)
    pyr_left, pyr_right, off, widths, heights = pyramids
    u_right, _ = _match_stereo(
        np.ascontiguousarray(left.keypoints, np.float64), np.ascontiguousarray(left.octave, np.int64),
        as_kernel(left.descriptors), np.ascontiguousarray(right.keypoints, np.float64),
        np.ascontiguousarray(right.octave, np.int64), as_kernel(right.descriptors),
        row_start, row_items, np.ascontiguousarray(scales, np.float64), 0.0, float(fx),
        th, pyr_left, pyr_right, off, widths, heights, half_win, search,
    )
    return u_right


class StereoPyramids(NamedTuple):
    """Both images of a rectified pair at every scale, each packed row-major into one array (see _packed_pyramid),
    for match_stereo's sub-pixel refinement."""
    left: np.ndarray
    right: np.ndarray
    offsets: np.ndarray  # where each level starts
    widths: np.ndarray
    heights: np.ndarray


def stereo_pyramids(left_image: np.ndarray, right_image: np.ndarray, scales: np.ndarray) -> StereoPyramids:
    """The pyramids match_stereo refines on: our own (INTER_LINEAR), not the ORB extractor's INTER_LINEAR_EXACT
    levels, on which refining measured worse (sync: KITTI 06 0.0778 -> 0.0818 m, synthetic stereo, 300 frames,
    seed 0, 4.04 -> 4.58 mm). 3.9 ms for a KITTI pair: the front end makes them while the features are extracted."""
    left, offsets, widths, heights = _packed_pyramid(left_image, scales)
    right, _, _, _ = _packed_pyramid(right_image, scales)
    return StereoPyramids(left, right, offsets, widths, heights)


def _packed_pyramid(image: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The image at each scale (each level resized from the one before, as ORB's pyramid), packed row-major
    into one array: (pixels, level offsets, level widths, level heights)."""
    h, w = image.shape[:2]
    levels = [np.ascontiguousarray(image, np.uint8)]
    for sc in scales[1:]:
        size = (max(int(round(w / sc)), 1), max(int(round(h / sc)), 1))
        levels.append(cv2.resize(levels[-1], size, interpolation=cv2.INTER_LINEAR))
    widths = np.array([lv.shape[1] for lv in levels], np.int64)
    heights = np.array([lv.shape[0] for lv in levels], np.int64)
    offsets = np.r_[0, np.cumsum(widths * heights)[:-1]].astype(np.int64)
    return np.concatenate([lv.ravel() for lv in levels]), offsets, widths, heights


def rotation_consistent(angle1: np.ndarray, angle2: np.ndarray, bins: int = 30) -> np.ndarray:
    """Keep matches whose keypoint-orientation change falls in the three most common histogram bins."""
    if len(angle1) == 0:
        return np.zeros(0, bool)
    diff = np.mod(np.asarray(angle1, float) - np.asarray(angle2, float), 360.0)
    b = np.minimum((diff * bins / 360.0).astype(np.int64), bins - 1)
    counts = np.bincount(b, minlength=bins)
    top = np.argsort(-counts, kind="stable")[:3]
    # ORB-SLAM drops the 2nd/3rd bins when they are much smaller than the first.
    top = [k for i, k in enumerate(top) if i == 0 or counts[k] >= 0.1 * counts[top[0]]]
    return np.isin(b, top)


def warm_up(descriptor_dtype=np.uint8) -> None:
    """Run every kernel once on tiny inputs so numba compiles (or loads its cache) before timing starts."""
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 60, (8, 2)).astype(np.float32)
    octave = np.zeros(8, np.int64)
    desc = rng.integers(0, 256, (8, 32), dtype=np.uint8)
    if np.dtype(descriptor_dtype) != np.uint8:
        desc = desc.astype(np.float32) / np.linalg.norm(desc.astype(np.float32), axis=1, keepdims=True)
    grid = KeypointGrid.build(kp, 64, 64)
    search_by_projection(kp, np.full(8, 3.0), octave, desc, kp, octave, desc, grid, np.zeros(8, bool))
    match_epipolar(desc, desc, kp, kp, octave, np.ones(8, bool), np.ones(8, bool), np.eye(3), np.ones(8))
    image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    features = Features(kp, octave.astype(np.int32), np.zeros(8, np.float32), np.zeros(8, np.float32), desc)
    match_stereo(features, features, image, image, np.ones(8), 50.0)
    medoid_descriptors(desc, np.array([0]), np.array([8]))
    nearest_matches(desc, desc, 1e9, 1.0)
