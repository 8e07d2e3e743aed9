"""ORB over a scale pyramid, with keypoints spread over the image as ORB-SLAM does.

OpenCV's ORB keeps the strongest corners per level, which piles features onto the most textured
regions. We ask it for a surplus and then pick, per level, the strongest keypoint of each grid cell in
turn (round robin), so weakly textured regions still get features. FAST runs at the high threshold;
an image too weak in texture to give the features asked for is detected again at the low one.
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.features.base import Features

_CELL_PX = 32  # grid cell size at the level's own resolution, as in ORB-SLAM's W=30 cells


class OrbExtractor:
    descriptor_size = 32
    descriptor_dtype = np.dtype(np.uint8)

    def __init__(self, n_features: int = 1000, scale_factor: float = 1.2, n_levels: int = 8,
                 fast_threshold: int = 20, min_fast_threshold: int = 7, surplus: float = 2.0):
        self.n_features = n_features
        self.scale_factor = scale_factor
        self.n_levels = n_levels
        self._orb, self._orb_low = (cv2.ORB_create(
            nfeatures=int(n_features * surplus), scaleFactor=scale_factor, nlevels=n_levels,
            edgeThreshold=19, firstLevel=0, WTA_K=2, scoreType=cv2.ORB_HARRIS_SCORE, patchSize=31,
            fastThreshold=threshold,
        ) for threshold in (fast_threshold, min_fast_threshold))
        self._quota = _level_quotas(n_features, scale_factor, n_levels)

    def extract(self, image: np.ndarray) -> Features:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        keypoints, descriptors = self._orb.detectAndCompute(gray, None)
        if len(keypoints) < self.n_features:
            keypoints, descriptors = self._orb_low.detectAndCompute(gray, None)
        if not keypoints:
            return _empty()
        pts = np.asarray(cv2.KeyPoint_convert(keypoints), dtype=np.float32).reshape(-1, 2)
        octave = np.fromiter((k.octave for k in keypoints), dtype=np.int32, count=len(keypoints))
        angle = np.fromiter((k.angle for k in keypoints), dtype=np.float32, count=len(keypoints))
        response = np.fromiter((k.response for k in keypoints), dtype=np.float32, count=len(keypoints))
        keep = self._distribute(pts, octave, response, gray.shape)
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
