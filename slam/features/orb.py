"""ORB over a scale pyramid, with keypoints spread over the image as ORB-SLAM does.

OpenCV's ORB keeps the strongest corners per level, which piles features onto the most textured
regions. We ask it for a surplus and then pick, per level, the strongest keypoint of each grid cell in
turn (round robin), so weakly textured regions still get features. FAST runs at the high threshold;
an image too weak in texture to give the features asked for is detected again at the low one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from slam.features.base import Features

_CELL_PX = 32  # grid cell size at the level's own resolution, as in ORB-SLAM's W=30 cells


class OrbExtractor:
    descriptor_size = 32
    descriptor_dtype = np.dtype(np.uint8)

    def __init__(self, n_features: int = 1000, scale_factor: float = 1.2, n_levels: int = 8,
                 fast_threshold: int = 20, min_fast_threshold: int = 7, surplus: float = 2.0, threads: int = 1):
        self.n_features = n_features
        self.scale_factor = scale_factor
        self.n_levels = n_levels
        self.threads = threads
        self._quota = _level_quotas(n_features, scale_factor, n_levels)
        # One single-level OpenCV ORB per pyramid level and FAST threshold, asked for the share of the surplus
        # OpenCV's own pyramid would give that level: run on our pyramid (built as OpenCV builds it) they give
        # OpenCV's multi-level keypoints and descriptors bit for bit (tests/unit/test_features_classic.py), but
        # the levels (and the stereo pair) can then be extracted in parallel: OpenCV releases the GIL.
        wanted = _opencv_level_counts(int(n_features * surplus), scale_factor, n_levels)
        self._detectors = {threshold: [cv2.ORB_create(
            nfeatures=int(count), scaleFactor=scale_factor, nlevels=1, edgeThreshold=19, firstLevel=0, WTA_K=2,
            scoreType=cv2.ORB_HARRIS_SCORE, patchSize=31, fastThreshold=threshold,
        ) for count in wanted] for threshold in (fast_threshold, min_fast_threshold)}
        self._thresholds = (fast_threshold, min_fast_threshold)
        self._pool: ThreadPoolExecutor | None = None

    def extract(self, image: np.ndarray) -> Features:
        return self.extract_batch([image])[0]

    def extract_batch(self, images: list[np.ndarray]) -> list[Features]:
        """Features of each image; every image's pyramid levels are extracted side by side on the pool."""
        grays = [image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in images]
        pyramids = self._map(self._pyramid, grays)
        high, low = self._thresholds
        levels = self._detect(pyramids, high, range(len(grays)))
        # An image too weak in texture for the features asked for is detected again at the low threshold.
        weak = [i for i, found in enumerate(levels) if sum(len(level[0]) for level in found) < self.n_features]
        for i, found in zip(weak, self._detect(pyramids, low, weak)):
            levels[i] = found
        return [self._features(found, gray.shape) for found, gray in zip(levels, grays)]

    def _pyramid(self, gray: np.ndarray) -> list[np.ndarray]:
        """OpenCV ORB's pyramid: each level resized from the one above (INTER_LINEAR_EXACT), sizes rounded
        from the float32 scale as cvRound does."""
        levels = [gray]
        for level in range(1, self.n_levels):
            scale = np.float32(self._level_scale(level))
            size = (int(np.rint(np.float32(gray.shape[1]) / scale)), int(np.rint(np.float32(gray.shape[0]) / scale)))
            levels.append(cv2.resize(levels[-1], size, interpolation=cv2.INTER_LINEAR_EXACT))
        return levels

    def _detect(self, pyramids: list[list[np.ndarray]], threshold: int, images) -> list[list[tuple]]:
        """Keypoint arrays per image and level (see _level_keypoints): the largest levels are handed out first."""
        tasks = [(pyramids[i][level], level, threshold) for level in range(self.n_levels) for i in images]
        found = iter(self._map(self._level_keypoints, tasks))
        out = {i: [None] * self.n_levels for i in images}
        for level in range(self.n_levels):
            for i in images:
                out[i][level] = next(found)
        return [out[i] for i in images]

    def _level_keypoints(self, task: tuple[np.ndarray, int, int]) -> tuple[np.ndarray, ...]:
        """One level's (points at full resolution, angles, responses, descriptors), converted from OpenCV's
        keypoints on the worker (overlapping the other levels' detection)."""
        image, level, threshold = task
        keypoints, descriptors = self._detectors[threshold][level].detectAndCompute(image, None)
        n = len(keypoints)
        if n == 0:
            empty = _empty()
            return empty.keypoints, empty.angle, empty.response, empty.descriptors
        xy = np.asarray(cv2.KeyPoint_convert(keypoints), dtype=np.float32).reshape(-1, 2)
        return (xy * np.float32(self._level_scale(level)),  # in float32, as OpenCV scales them
                np.fromiter((k.angle for k in keypoints), dtype=np.float32, count=n),
                np.fromiter((k.response for k in keypoints), dtype=np.float32, count=n), descriptors)

    def _level_scale(self, level: int) -> float:
        """OpenCV's scale of a level: its float32 scale factor to the level's power (in double)."""
        return float(np.float32(self.scale_factor)) ** level

    def _map(self, fn, items: list) -> list:
        if self.threads <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="slam-orb")
        return list(self._pool.map(fn, items))

    def _features(self, found: list[tuple], shape) -> Features:
        """One image's levels as one keypoint set in level order."""
        counts = [len(level[0]) for level in found]
        if not sum(counts):
            return _empty()
        pts, angle, response, descriptors = (np.concatenate(arrays) for arrays in zip(*found))
        octave = np.repeat(np.arange(self.n_levels, dtype=np.int32), counts)
        keep = self._distribute(pts, octave, response, shape)
        return Features(pts[keep], octave[keep], angle[keep], response[keep], descriptors[keep])

    def _distribute(self, pts: np.ndarray, octave: np.ndarray, response: np.ndarray, shape) -> np.ndarray:
        """Indices of the keypoints kept: per level, cells take turns giving up their strongest keypoint."""
        cell = _CELL_PX * self.scale_factor ** octave.astype(np.float64)  # same image content at every level
        cols = np.ceil(shape[1] / cell).astype(np.int64)
        cell_id = (pts[:, 1] // cell).astype(np.int64) * cols + (pts[:, 0] // cell).astype(np.int64)
        key = octave.astype(np.int64) * (1 << 32) + cell_id
        order = np.lexsort((-response, key))  # by level and cell, strongest first
        sorted_key = key[order]
        first = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        # Within a level: all rank-0 keypoints (strongest first), then rank 1, ... up to the level's quota.
        order = np.lexsort((-response, rank, octave))
        level_sorted = octave[order]
        level_first = np.searchsorted(level_sorted, level_sorted, side="left")
        position = np.arange(len(order)) - level_first
        return order[position < self._quota[level_sorted]]

def _opencv_level_counts(n_features: int, scale_factor: float, n_levels: int) -> list[int]:
    """Keypoints OpenCV's ORB keeps per level of its pyramid (orb.cpp, in its float32 arithmetic: a geometric
    share, rounded, the last level the remainder)."""
    factor = np.float32(1.0 / scale_factor)
    one = np.float32(1)
    per_level = np.float32(n_features) * (one - factor) / (one - np.float32(float(factor) ** n_levels))
    counts = []
    for _ in range(n_levels - 1):
        counts.append(int(np.rint(per_level)))
        per_level *= factor
    return counts + [max(n_features - sum(counts), 0)]


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


def _empty() -> Features:
    return Features(np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32),
                    np.zeros(0, np.float32), np.zeros((0, 32), np.uint8))
