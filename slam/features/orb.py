"""ORB over a scale pyramid, with keypoints spread over the image as ORB-SLAM does.

As ORB-SLAM's ComputeKeyPointsOctTree: every FAST corner of a level is found at the low threshold; each grid
cell of the level keeps its corners at or over the high threshold or, when it has none, its low-threshold ones;
then the cells take turns giving up their strongest corner (FAST score) until the level's quota is filled, and
descriptors are computed for the chosen corners only. OpenCV's ORB alone keeps the strongest corners of a whole
level, so weakly textured regions got none: on KITTI 06 the road, grass and pavement in front of the car (the
closest points, whose stereo depth fixes the scale) had no keypoints, and the path came out 0.5% long (sync ATE
0.078 m; with the per-cell choice 0.031 m, ORB-SLAM3 0.051 m).

Each level is extracted on its own (a single-level OpenCV ORB on OpenCV's pyramid, which gives its multi-level
corners and descriptors bit for bit), so the levels, and a stereo pair's two images, run side by side on a
thread pool: OpenCV releases the GIL.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numba as nb
import numpy as np

from slam.features.base import Features, empty_features, to_gray

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
        self._fast = cv2.FastFeatureDetector_create(min(min_fast_threshold, fast_threshold), True,
                                                    cv2.FAST_FEATURE_DETECTOR_TYPE_9_16)
        self._orb = cv2.ORB_create(scaleFactor=scale_factor, nlevels=1, edgeThreshold=_EDGE, firstLevel=0, WTA_K=2,
                                   patchSize=2 * _HALF_PATCH + 1)
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
        corners = self._fast.detect(image, None)
        if not corners:
            return empty_features(self.descriptor_size, self.descriptor_dtype)
        xy = np.asarray(cv2.KeyPoint_convert(corners), dtype=np.float32).reshape(-1, 2)
        response = np.fromiter((k.response for k in corners), dtype=np.float32, count=len(corners))
        h, w = image.shape
        inside = np.flatnonzero((xy[:, 0] >= _EDGE) & (xy[:, 0] < w - _EDGE) & (xy[:, 1] >= _EDGE)
                                & (xy[:, 1] < h - _EDGE))
        xy, response = xy[inside], response[inside]
        pts = xy * np.float32(self._level_scale(level))  # in float32, as OpenCV scales them
        keep = self._distribute(pts, level, response, full_shape)
        col, row = (np.rint(xy[keep, i]).astype(np.int64) for i in (0, 1))
        m01, m10 = _intensity_moments(image, col, row, _UMAX)
        keypoints = [cv2.KeyPoint(float(x), float(y), 2 * _HALF_PATCH + 1, cv2.fastAtan2(float(a), float(b)),
                                  float(r), 0, i)
                     for i, (x, y, a, b, r) in enumerate(zip(xy[keep, 0], xy[keep, 1], m01, m10, response[keep]))]
        keypoints, descriptors = self._orb.compute(image, keypoints)
        if not keypoints or descriptors is None:
            return empty_features(self.descriptor_size, self.descriptor_dtype)
        kept = keep[np.fromiter((k.class_id for k in keypoints), dtype=np.int64, count=len(keypoints))]
        angle = np.fromiter((k.angle for k in keypoints), dtype=np.float32, count=len(keypoints))
        return Features(pts[kept], np.full(len(kept), level, np.int32), angle, response[kept], descriptors)

    def _level_scale(self, level: int) -> float:
        """OpenCV's scale of a level: its float32 scale factor to the level's power (in double)."""
        return float(np.float32(self.scale_factor)) ** level

    def _map(self, fn, items: list) -> list:
        if self.threads <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="slam-orb")
        return list(self._pool.map(fn, items))

    def _distribute(self, pts: np.ndarray, level: int, response: np.ndarray, shape) -> np.ndarray:
        """Indices of one level's corners kept: a cell's strong corners (else its weak ones), the cells taking
        turns giving up their strongest, up to the level's quota."""
        cell = _CELL_PX * self.scale_factor ** level  # same image content at every level
        cols = int(np.ceil(shape[1] / cell))
        xy = pts.astype(np.float64)
        cell_id = (xy[:, 1] // cell).astype(np.int64) * cols + (xy[:, 0] // cell).astype(np.int64)
        return _round_robin(cell_id, response, response >= self.fast_threshold, int(self._quota[level]))


@nb.njit(cache=True, nogil=True)
def _round_robin(cell_id, response, strong, quota):
    """Indices of the corners kept: within each cell its strong corners, or all its corners where it has no strong
    one; then every cell's strongest (strongest first), every cell's second, ... up to `quota`. Equal scores keep
    the corners' order (as np.lexsort would: stable sorts throughout)."""
    n_cells = 0
    for c in cell_id:
        n_cells = max(n_cells, c + 1)
    has_strong = np.zeros(n_cells, np.bool_)
    for i in range(cell_id.shape[0]):
        if strong[i]:
            has_strong[cell_id[i]] = True
    usable = np.array([i for i in range(cell_id.shape[0]) if strong[i] or not has_strong[cell_id[i]]], np.int64)
    # Each cell's corners, strongest first: its rank among them.
    by_cell = _stable_buckets(cell_id[usable], n_cells)
    rank = np.empty(usable.shape[0], np.int64)
    _rank_within(by_cell, -response[usable], rank)
    # By rank, then strongest first, up to the quota.
    top = 0
    for r in rank:
        top = max(top, r + 1)
    by_rank = _stable_buckets(rank, top)
    out = np.empty(min(quota, usable.shape[0]), np.int64)
    filled = 0
    start = 0
    for bucket in range(top):
        members = by_rank[1][start:by_rank[0][bucket]]
        start = by_rank[0][bucket]
        order = np.argsort(-response[usable[members]], kind="mergesort")
        for j in order:
            if filled == out.shape[0]:
                return out
            out[filled] = usable[members[j]]
            filled += 1
    return out[:filled]


@nb.njit(cache=True, nogil=True)
def _stable_buckets(keys, n_keys):
    """A stable counting sort: (end of each key's run, positions ordered by key then by position)."""
    ends = np.zeros(n_keys, np.int64)
    for k in keys:
        ends[k] += 1
    for k in range(1, n_keys):
        ends[k] += ends[k - 1]
    fill = np.zeros(n_keys, np.int64)
    for k in range(1, n_keys):
        fill[k] = ends[k - 1]
    order = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        order[fill[keys[i]]] = i
        fill[keys[i]] += 1
    return ends, order


@nb.njit(cache=True, nogil=True)
def _rank_within(buckets, key, rank):
    """rank[i]: i's position within its bucket when the bucket is sorted by key (stable)."""
    ends, order = buckets
    start = 0
    for b in range(ends.shape[0]):
        members = order[start:ends[b]]
        start = ends[b]
        sorted_members = members[np.argsort(key[members], kind="mergesort")]
        for r in range(sorted_members.shape[0]):
            rank[sorted_members[r]] = r


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
