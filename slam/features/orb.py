"""ORB over a scale pyramid, with keypoints spread over the image as ORB-SLAM does.

As ORB-SLAM's ComputeKeyPointsOctTree: every FAST corner of a level is found at the low threshold; each grid
cell of the level keeps its corners at or over the high threshold or, when it has none, its low-threshold ones;
then the cells take turns giving up their strongest corner (FAST score) until the level's quota is filled, and
descriptors are computed for the chosen corners only. OpenCV's ORB alone keeps the strongest corners of a whole
level, so weakly textured regions got none: on KITTI 06 the road, grass and pavement in front of the car (the
closest points, whose stereo depth fixes the scale) had no keypoints, and the path came out 0.5% long (sync ATE
0.078 m; with the per-cell choice 0.031 m, ORB-SLAM3 0.051 m).

Each level is extracted on its own, on OpenCV's pyramid, with OpenCV ORB's corners, orientations and descriptors
bit for bit (FAST and the binary tests as compiled kernels, the test pattern read off OpenCV's ORB), so the
levels, and a stereo pair's two images, run side by side on a thread pool: OpenCV and the numba kernels release
the GIL.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numba as nb
import numpy as np

from slam.features.base import Features, empty_features, to_gray
from slam.matching import counting_sort

_CELL_PX = 32  # grid cell size at the level's own resolution, as in ORB-SLAM's W=30 cells
_EDGE = 19  # OpenCV ORB's edgeThreshold: corners this close to a level's border are dropped
_HALF_PATCH = 15  # ORB's 31-pixel patch: the orientation's intensity centroid is taken over this radius


class OrbExtractor:
    descriptor_size = 32
    descriptor_dtype = np.dtype(np.uint8)

    def __init__(self, n_features: int = 1000, scale_factor: float = 1.2, n_levels: int = 8,
                 fast_threshold: int = 20, min_fast_threshold: int = 7, threads: int = 1):
        self.n_features = n_features
        self.scale_factor = scale_factor
        self.n_levels = n_levels
        self.fast_threshold = fast_threshold
        self.threads = threads
        self._quota = _level_quotas(n_features, scale_factor, n_levels)
        # Every FAST corner at the low threshold, with its score (how ORB-SLAM ranks them); orientations and
        # descriptors only for the chosen ones. (OpenCV's ORB detect() computes the orientation of every corner:
        # 36k at threshold 7 on a KITTI image, 25 ms against 11 ms for the corners alone.)
        self._corner_threshold = min(min_fast_threshold, fast_threshold)
        if not 0 <= self._corner_threshold <= 255:
            raise ValueError(f"FAST threshold {self._corner_threshold} is not in 0..255")
        _test_pattern()  # read off OpenCV once per process, before the pool's threads need it
        self._pool: ThreadPoolExecutor | None = None

    def extract(self, image: np.ndarray) -> Features:
        return self.extract_batch([image])[0]

    def extract_batch(self, images: list[np.ndarray]) -> list[Features]:
        """Features of each image; every image's pyramid levels are extracted side by side on the pool."""
        grays = [to_gray(image) for image in images]
        pyramids = self._map(self._pyramid, grays)
        tasks = [(pyramids[i][level], level, grays[i].shape) for level in range(self.n_levels)
                 for i in range(len(grays))]
        found = self._map(self._level_features, tasks)  # the largest levels handed out first
        per_image = [found[i::len(grays)] for i in range(len(grays))]
        return [_concatenate(levels) for levels in per_image]

    def close(self) -> None:
        """Stop the extraction threads (a later extract() starts them again)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _pyramid(self, gray: np.ndarray) -> list[np.ndarray]:
        """OpenCV ORB's pyramid: each level resized from the one above (INTER_LINEAR_EXACT), sizes rounded
        from the float32 scale as cvRound does."""
        levels = [gray]
        for level in range(1, self.n_levels):
            scale = np.float32(self._level_scale(level))
            size = (int(np.rint(np.float32(gray.shape[1]) / scale)), int(np.rint(np.float32(gray.shape[0]) / scale)))
            levels.append(cv2.resize(levels[-1], size, interpolation=cv2.INTER_LINEAR_EXACT))
        return levels

    def _level_features(self, task: tuple[np.ndarray, int, tuple]) -> Features:
        """One level's chosen keypoints (coordinates at full resolution) with their descriptors: the same corners,
        orientations and descriptors as OpenCV's ORB gives (tests/unit/test_features_classic.py)."""
        image, level, full_shape = task
        # OpenCV's FAST corners (same corners, order and scores) less those within _EDGE of the border, which
        # OpenCV's ORB drops, as arrays: 1.7 ms per KITTI image's pyramid, where cv2's FAST and reading its ~25k
        # KeyPoint objects took 8.8 ms
        x, y, score = fast_corners(image, self._corner_threshold, _EDGE)
        if x.shape[0] == 0:
            return empty_features(self.descriptor_size, self.descriptor_dtype)
        xy = np.column_stack((x, y)).astype(np.float32)
        pts = xy * np.float32(self._level_scale(level))  # in float32, as OpenCV scales them
        cell = _CELL_PX * self.scale_factor ** level  # same image content at every level
        keep = _choose_corners(pts, score, cell, int(np.ceil(full_shape[1] / cell)), self.fast_threshold,
                               int(self._quota[level]))
        col, row = x[keep].astype(np.int64), y[keep].astype(np.int64)
        response = score[keep].astype(np.float32)
        m01, m10 = _intensity_moments(image, col, row, _UMAX)
        # OpenCV's arctangent, bit for bit (cv2.phase differs from it in the last bit for 2% of the angles)
        angle = np.array(list(map(cv2.fastAtan2, m01.tolist(), m10.tolist())), np.float32)
        # The binary tests are made on the level smoothed as OpenCV's ORB smooths it (a 7x7 Gaussian, sigma 2, in
        # float, rounded), here without ORB.compute's KeyPoint objects: 2000 of them made and read back in Python
        # cost 2.6 ms of a KITTI image's 14 ms, with the GIL held, and compute() 4.6 ms more; now 0.3 + 0.9 ms.
        blurred = cv2.sepFilter2D(image, cv2.CV_8U, _SMOOTHING, _SMOOTHING, borderType=cv2.BORDER_REFLECT_101)
        descriptors = _binary_tests(blurred, col, row, angle, *_test_pattern())
        return Features(pts[keep], np.full(len(keep), level, np.int32), angle, response, descriptors)

    def _level_scale(self, level: int) -> float:
        """OpenCV's scale of a level: its float32 scale factor to the level's power (in double)."""
        return float(np.float32(self.scale_factor)) ** level

    def _map(self, fn, items: list) -> list:
        if self.threads <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="slam-orb")
        return list(self._pool.map(fn, items))


def fast_corners(image: np.ndarray, threshold: int, border: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's FAST corners, as cv2.FastFeatureDetector_create(threshold, True, TYPE_9_16).detect gives them, as
    arrays: x, y (int32) and score (uint8, OpenCV's KeyPoint.response), in OpenCV's order (row by row, left to
    right); only those at least `border` pixels from the image's edges (OpenCV's own border is 3). The threshold
    is one of 0..255 (OpenCV's result for others depends on which of its code paths handles a pixel).

    A pixel is a corner where 9 contiguous pixels of the 16 on the circle of radius 3 around it are all brighter
    than it plus the threshold, or all darker than it less the threshold; its score is the largest threshold at
    which it still is one (OpenCV's cornerScore<16>). Corners not over every one of their 8 neighbours' scores (a
    non-corner's score counting as 0) are dropped.
    """
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"FAST needs a single-channel uint8 image, not {image.dtype} of shape {image.shape}")
    if not 0 <= threshold <= 255:
        raise ValueError(f"FAST threshold {threshold} is not in 0..255")
    return _fast_corners(np.ascontiguousarray(image), int(threshold), int(border))


@nb.njit(cache=True, nogil=True)
def _fast_corners(image, threshold, border):
    """fast_corners on a C-contiguous image. Corner scores are found three rows at a time, for the rows and
    columns kept and a one-pixel margin around them (their neighbours in the non-maximum suppression).

    Every pixel is scored, branch-free: 0.9 ms per KITTI image's pyramid at threshold 7, where OpenCV's
    opposite-pairs pre-test (vectorized too) took 2.0 ms alone and 8-11 ms with the ~190k pixels passing it
    scored. Leaving out the extractor's 19-pixel border band: 1.1 against 1.5 ms per TUM image, 1.7 for both on
    KITTI."""
    h, w = image.shape
    t = min(max(threshold, 0), 255)  # as OpenCV clamps it
    x0, x1 = max(3, border), min(w - 4, w - 1 - border)  # columns and rows kept (inclusive)
    y0, y1 = max(3, border), min(h - 4, h - 1 - border)
    if x1 < x0 or y1 < y0:
        return np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.uint8)
    sx0, sx1 = max(3, x0 - 1), min(w - 4, x1 + 1)  # where scores are needed: OpenCV finds no corner nearer the
    sy0, sy1 = max(3, y0 - 1), min(h - 4, y1 + 1)  # border than 3, so its neighbours there score 0
    flat = image.ravel()
    scores = np.zeros((3, w), np.uint8)  # rows y-2, y-1, y at (y - sy0) % 3; columns out of [sx0, sx1] stay 0
    n_words = (x1 - x0 + 8) // 8
    local_max = np.zeros(n_words * 8, np.uint8)
    words = local_max.view(np.uint64)
    # At most one corner in a 2x2 block survives (it must be over its 8 neighbours).
    capacity = ((x1 - x0) // 2 + 1) * ((y1 - y0) // 2 + 1)
    xs = np.empty(capacity, np.int32)
    ys = np.empty(capacity, np.int32)
    rs = np.empty(capacity, np.uint8)
    n = 0
    for y in range(sy0, y1 + 2):
        below = scores[(y - sy0) % 3]
        if y <= sy1:
            _row_scores(flat, w, y * w + sx0, sx1 - sx0 + 1, t, below, sx0)
        else:
            below[:] = 0
        row = y - 1
        if row < y0:
            continue
        here, above = scores[(row - sy0) % 3], scores[(row - 1 - sy0) % 3]
        _row_local_max(above, here, below, x0, x1 - x0 + 1, local_max)
        for i in range(n_words):
            if words[i] != 0:
                for j in range(8 * i, 8 * i + 8):
                    if local_max[j]:
                        xs[n] = x0 + j
                        ys[n] = row
                        rs[n] = here[x0 + j]
                        n += 1
    return xs[:n].copy(), ys[:n].copy(), rs[:n].copy()


@nb.njit(cache=True, nogil=True)
def _row_scores(flat, w, start, n, t, out, out_start):
    """out[out_start + i]: the FAST score of pixel flat[start + i] where it is a corner at threshold t, else 0.

    Branch-free on uint8 values, from one flat array with unsigned indices (no wraparound test), so that LLVM
    vectorizes it 64 pixels wide: 1.8 us per 1220-pixel KITTI row, against 15 us with a view per circle pixel (only
    vectorized within a pixel) and 16 us with signed differences (numba widens them to int64). A pixel is a corner
    brighter than an arc when the arc's brightest pixel is darker than it less t (score: the difference less 1,
    as OpenCV's), and one darker than an arc when the arc's darkest pixel is brighter than it plus t; it cannot be
    both (two 9-arcs of 16 overlap)."""
    t8 = np.uint8(t)
    for i in range(n):
        j = start + i
        v = flat[np.uintp(j)]
        # The 16 pixels of the circle of radius 3, clockwise from the one below, numbered as OpenCV does.
        p0, p1, p2 = flat[np.uintp(j + 3 * w)], flat[np.uintp(j + 3 * w + 1)], flat[np.uintp(j + 2 * w + 2)]
        p3, p4, p5 = flat[np.uintp(j + w + 3)], flat[np.uintp(j + 3)], flat[np.uintp(j - w + 3)]
        p6, p7, p8 = flat[np.uintp(j - 2 * w + 2)], flat[np.uintp(j - 3 * w + 1)], flat[np.uintp(j - 3 * w)]
        p9, p10, p11 = flat[np.uintp(j - 3 * w - 1)], flat[np.uintp(j - 2 * w - 2)], flat[np.uintp(j - w - 3)]
        p12, p13, p14 = flat[np.uintp(j - 3)], flat[np.uintp(j + w - 3)], flat[np.uintp(j + 2 * w - 2)]
        p15 = flat[np.uintp(j + 3 * w - 1)]
        # Brightest (hi*) and darkest (lo*) of the 8 pixels from each odd index k on (indices mod 16): the 9-arcs
        # from k-1 and from k are those 8 and one more.
        hi1, hi3, hi5, hi7 = max(p1, p2), max(p3, p4), max(p5, p6), max(p7, p8)
        hi9, hi11, hi13, hi15 = max(p9, p10), max(p11, p12), max(p13, p14), max(p15, p0)
        hi1, hi3, hi5, hi7, hi9, hi11, hi13, hi15 = (max(hi1, hi3), max(hi3, hi5), max(hi5, hi7), max(hi7, hi9),
                                                     max(hi9, hi11), max(hi11, hi13), max(hi13, hi15), max(hi15, hi1))
        hi1, hi3, hi5, hi7, hi9, hi11, hi13, hi15 = (max(hi1, hi5), max(hi3, hi7), max(hi5, hi9), max(hi7, hi11),
                                                     max(hi9, hi13), max(hi11, hi15), max(hi13, hi1), max(hi15, hi3))
        lo1, lo3, lo5, lo7 = min(p1, p2), min(p3, p4), min(p5, p6), min(p7, p8)
        lo9, lo11, lo13, lo15 = min(p9, p10), min(p11, p12), min(p13, p14), min(p15, p0)
        lo1, lo3, lo5, lo7, lo9, lo11, lo13, lo15 = (min(lo1, lo3), min(lo3, lo5), min(lo5, lo7), min(lo7, lo9),
                                                     min(lo9, lo11), min(lo11, lo13), min(lo13, lo15), min(lo15, lo1))
        lo1, lo3, lo5, lo7, lo9, lo11, lo13, lo15 = (min(lo1, lo5), min(lo3, lo7), min(lo5, lo9), min(lo7, lo11),
                                                     min(lo9, lo13), min(lo11, lo15), min(lo13, lo1), min(lo15, lo3))
        # The darkest arc's brightest pixel, the brightest arc's darkest pixel.
        dark = min(max(hi1, p0), max(hi1, p9), max(hi3, p2), max(hi3, p11), max(hi5, p4), max(hi5, p13),
                   max(hi7, p6), max(hi7, p15), max(hi9, p8), max(hi9, p1), max(hi11, p10), max(hi11, p3),
                   max(hi13, p12), max(hi13, p5), max(hi15, p14), max(hi15, p7))
        bright = max(min(lo1, p0), min(lo1, p9), min(lo3, p2), min(lo3, p11), min(lo5, p4), min(lo5, p13),
                     min(lo7, p6), min(lo7, p15), min(lo9, p8), min(lo9, p1), min(lo11, p10), min(lo11, p3),
                     min(lo13, p12), min(lo13, p5), min(lo15, p14), min(lo15, p7))
        # Differences saturated at 0, in uint8 (np.uint8 of each keeps LLVM's vectors 64 lanes wide).
        s = max(np.uint8(v - min(v, dark)), np.uint8(bright - min(bright, v)))
        out[np.uintp(out_start + i)] = np.uint8(s - 1) if s > t8 else np.uint8(0)


@nb.njit(cache=True, nogil=True)
def _row_local_max(above, here, below, start, n, out):
    """out[i] = 1 where here[start + i] is over each of its 8 neighbours (so not 0), else 0."""
    for i in range(n):
        x = np.uintp(start + i)
        left, right = x - np.uintp(1), x + np.uintp(1)
        around = max(max(above[left], above[x], above[right]), max(here[left], here[right]),
                     max(below[left], below[x], below[right]))
        out[i] = np.uint8(here[x] > around)


@nb.njit(cache=True, nogil=True)
def _choose_corners(pts, score, cell, cols, strong_threshold, quota):
    """Indices of one level's corners kept: within each grid cell its strong corners (score >= strong_threshold),
    or all its corners where it has no strong one; then every cell's strongest corner (strongest first), every
    cell's second, ... up to `quota`. Equal scores keep the corners' order. Cells are `cell` pixels square in
    full-resolution coordinates (pts, float32), numbered row by row, `cols` to a row.

    Three stable counting sorts (scores are 0..255): by score, by cell (a corner's rank in its cell), by rank.
    Was per-cell and per-rank argsorts: 1.2 ms per KITTI image, with the cell numbers in numpy 0.5 ms more."""
    n = pts.shape[0]
    cell_id = np.empty(n, np.int64)
    n_cells = 0
    for i in range(n):
        cell_id[i] = np.int64(np.float64(pts[i, 1]) // cell) * cols + np.int64(np.float64(pts[i, 0]) // cell)
        n_cells = max(n_cells, cell_id[i] + 1)
    has_strong = np.zeros(n_cells, np.bool_)
    for i in range(n):
        if score[i] >= strong_threshold:
            has_strong[cell_id[i]] = True
    usable = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        if score[i] >= strong_threshold or not has_strong[cell_id[i]]:
            usable[m] = i
            m += 1
    usable = usable[:m]
    # strongest first, equal scores in corner order
    by_score = counting_sort(usable, 255 - score[usable].astype(np.int64), 256)
    # then stably by cell: each corner's rank within its cell
    by_cell = counting_sort(by_score, cell_id[by_score], n_cells)
    rank = np.empty(n, np.int64)
    top = 0
    previous, r = -1, 0
    for i in by_cell:
        r = r + 1 if cell_id[i] == previous else 0
        previous = cell_id[i]
        rank[i] = r
        top = max(top, r + 1)
    # by rank, strongest first within a rank
    chosen = counting_sort(by_score, rank[by_score], top)
    return chosen[:min(quota, m)].copy()


def _patch_half_widths(half: int) -> np.ndarray:
    """Half-width of ORB's circular patch on each row from its centre (OpenCV's umax, made symmetric)."""
    vmax, vmin = math.floor(half * math.sqrt(2.0) / 2 + 1), math.ceil(half * math.sqrt(2.0) / 2)
    umax = [0] * (half + 2)
    for v in range(vmax + 1):
        umax[v] = round(math.sqrt(half * half - v * v))
    v0 = 0
    for v in range(half, vmin - 1, -1):
        while umax[v0] == umax[v0 + 1]:
            v0 += 1
        umax[v] = v0
        v0 += 1
    return np.array(umax, np.int64)


_UMAX = _patch_half_widths(_HALF_PATCH)
_SMOOTHING = cv2.getGaussianKernel(7, 2, cv2.CV_32F)  # OpenCV ORB's GaussianBlur(7x7, sigma 2) before the tests


@functools.cache
def _test_pattern() -> tuple[np.ndarray, np.ndarray]:
    """The 256 point pairs of ORB's binary tests (x and y of points 2k and 2k+1 compared by descriptor bit k, as
    float32), read off OpenCV's own ORB rather than copied from its source: its descriptor of a keypoint at angle 0
    on images of a brightness step. Across a step at column c (bright at x >= c), smoothed 3 pixels either way, a
    pair with x0 < x1 tests true exactly for c in [x0 - 2, x1 + 3], and a step the other way gives pairs with
    x0 > x1; rows likewise. A pair sharing a column (or row) is told apart on a step cut to the rows (columns) near
    the point of the two that the cut makes brighter. Each sweep is one compute() call on a row of 48-pixel windows.
    Equal, on 80k random keypoints and angles over KITTI and TUM images, to OpenCV's descriptors (and the tests)."""
    orb = cv2.ORB_create(nlevels=1, edgeThreshold=_EDGE, WTA_K=2, patchSize=2 * _HALF_PATCH + 1)
    steps = np.arange(-18, 19)  # step positions relative to the keypoint; the pattern spans -13..13

    def bits(windows: list[np.ndarray]) -> np.ndarray:
        """(windows, 256) test results, one 48x48 window per keypoint at its centre."""
        image = np.hstack(windows)
        keypoints = [cv2.KeyPoint(24.0 + 48 * i, 24.0, 31, 0.0, 1.0, 0, i) for i in range(len(windows))]
        kept, descriptors = orb.compute(image, keypoints)
        if descriptors is None or len(kept) != len(windows):
            raise RuntimeError("OpenCV's ORB dropped a probe keypoint: its binary-test pattern cannot be read")
        return np.unpackbits(descriptors, axis=1, bitorder="little").astype(bool)

    offset = np.arange(48) - 24

    def step(axis: int, c: int, rising: bool, cut: np.ndarray | None = None) -> np.ndarray:
        along = offset[None, :] if axis == 0 else offset[:, None]
        bright = np.broadcast_to((along >= c) if rising else (along < c), (48, 48))
        return ((bright if cut is None else bright & cut) * np.uint8(255)).astype(np.uint8)

    points = np.zeros((256, 2, 2), np.int64)  # pair, point, axis
    resolved = np.zeros((256, 2), bool)
    for axis in (0, 1):
        for rising in (True, False):
            on = bits([step(axis, c, rising) for c in steps])
            for k in np.flatnonzero(on.any(axis=0) & ~resolved[:, axis]):
                first, last = steps[on[:, k]].min() + 2, steps[on[:, k]].max() - 3
                points[k, :, axis] = (first, last) if rising else (last, first)
                resolved[k, axis] = True
    for axis in (0, 1):
        other = 1 - axis
        for k in np.flatnonzero(~resolved[:, axis]):
            if not resolved[k, other]:
                raise RuntimeError("OpenCV's ORB compares a point with itself: its binary-test pattern cannot be read")
            a, b = points[k, :, other]
            across = offset[:, None] if other == 1 else offset[None, :]
            cut = np.broadcast_to((across >= b) if a < b else (across <= b), (48, 48))  # point 1 the brighter
            on = bits([step(axis, c, True, cut) for c in steps])[:, k]
            points[k, :, axis] = steps[on].max() - 3
    xy = points.reshape(512, 2).astype(np.float32)
    return np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])


@nb.njit(cache=True, nogil=True)
def _binary_tests(blurred, col, row, angle_deg, px, py):
    """ORB descriptors (OpenCV's computeOrbDescriptors): bit k of a keypoint's descriptor is whether the smoothed
    image is darker at its pattern point 2k than at 2k+1, the pattern rotated by the keypoint's angle (in float32,
    coordinates rounded half to even as cvRound). Every sample lies in the image: keypoints are at least 19 pixels
    from its edges and the rotated pattern reaches 18."""
    w = blurred.shape[1]
    flat = blurred.ravel()
    out = np.empty((col.shape[0], 32), np.uint8)
    to_rad = np.float32(np.pi / 180.0)
    offsets = np.empty(512, np.int32)
    for i in range(col.shape[0]):
        angle = np.float32(angle_deg[i]) * to_rad
        a, b = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        for j in range(512):
            offsets[j] = (np.int32(np.rint(px[j] * b + py[j] * a)) * np.int32(w)
                          + np.int32(np.rint(px[j] * a - py[j] * b)))
        centre = row[i] * w + col[i]
        for byte in range(32):
            value = 0
            for bit in range(8):
                j = 16 * byte + 2 * bit
                value |= np.int32(flat[centre + offsets[j]] < flat[centre + offsets[j + 1]]) << bit
            out[i, byte] = value
    return out


@nb.njit(cache=True, nogil=True)
def _intensity_moments(image, col, row, umax):
    """ORB's orientation moments (m01, m10) over the circular patch around each keypoint, as OpenCV's ICAngles."""
    half = umax.shape[0] - 2
    m01 = np.empty(col.shape[0], np.float32)
    m10 = np.empty(col.shape[0], np.float32)
    for i in range(col.shape[0]):
        cx, cy = col[i], row[i]
        a, b = 0, 0
        for u in range(-half, half + 1):
            a += u * np.int64(image[cy, cx + u])
        for v in range(1, half + 1):
            row_sum = 0
            for u in range(-umax[v], umax[v] + 1):
                plus, minus = np.int64(image[cy + v, cx + u]), np.int64(image[cy - v, cx + u])
                row_sum += plus - minus
                a += u * (plus + minus)
            b += v * row_sum
        m10[i], m01[i] = a, b
    return m01, m10


def _concatenate(levels: list[Features]) -> Features:
    """One image's levels as one keypoint set, in level order."""
    return Features(*(np.concatenate([getattr(f, name) for f in levels])
                      for name in ("keypoints", "octave", "angle", "response", "descriptors")))


def _level_quotas(n_features: int, scale_factor: float, n_levels: int) -> np.ndarray:
    """Features per level proportional to the level's area share, as ORB-SLAM distributes them."""
    factor = 1.0 / scale_factor
    share = factor ** np.arange(n_levels)
    quota = np.round(n_features * share / share.sum()).astype(int)
    quota[-1] = max(n_features - quota[:-1].sum(), 0)
    return quota


def mean_window_scale(n_features: int | None = None, scale_factor: float | None = None,
                      n_levels: int | None = None) -> float:
    """ORB's search-window factor scale^octave averaged over its keypoints (per-level quotas as weights).

    A single-level detector's windows are scaled by this so that they match ORB's on average (defaults:
    FeaturesConfig's 1000 features, scale 1.2, 8 levels -> 1.74).
    """
    from slam.config import FeaturesConfig
    from slam.features.base import level_scales

    d = FeaturesConfig()
    n_features = d.n_features if n_features is None else n_features
    scale_factor = d.scale_factor if scale_factor is None else scale_factor
    n_levels = d.n_levels if n_levels is None else n_levels
    quota = _level_quotas(n_features, scale_factor, n_levels)
    return float(np.sum(quota * level_scales(scale_factor, n_levels)) / quota.sum())
