"""Turning decoded images into Frames: features plus per-keypoint depth (RGB-D) or stereo match."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from slam.camera import Camera
from slam.features.base import Extractor, Features, extract_batch, level_scales
from slam.frame import Frame
from slam.io.base import FrameData
from slam.matching import StereoPyramids, match_stereo, stereo_pyramids, thresholds


class FrameBuilder:
    def __init__(self, mode: str, camera: Camera, extractor: Extractor):
        self.mode = mode
        self.camera = camera
        self.extractor = extractor
        self.scales = level_scales(extractor.scale_factor, extractor.n_levels)
        self.inv_level_sigma2 = 1.0 / self.scales**2
        self.stereo_threshold = thresholds(extractor.descriptor_dtype).stereo
        self._stereo_pool: ThreadPoolExecutor | None = None

    def build(self, data: FrameData, frame_id: int) -> Frame:
        gray = data.gray
        pyramids = None
        if self.mode == "stereo" and data.right is not None:  # both images in one batch: extracted side by side
            if self._stereo_pool is None:
                self._stereo_pool = ThreadPoolExecutor(1, thread_name_prefix="slam-stereo")
            # The refinement's pyramids are made meanwhile, in the extraction's idle moments (OpenCV releases the GIL)
            pending = self._stereo_pool.submit(stereo_pyramids, gray, data.right, self.scales)
            features, right = extract_batch(self.extractor, [gray, data.right])
            pyramids = pending.result()
        else:
            features, right = self.extractor.extract(gray), None
        depth, u_right = self._depth(features, right, data, gray, pyramids)
        colors = _sample_colors(data.image, features.keypoints)
        frame = Frame(frame_id, data.timestamp, features, self.camera, depth, u_right,
                      self.inv_level_sigma2[features.octave])
        frame.colors = colors
        return frame

    def warm_up(self) -> None:
        """Extract from a small textured image once, so the extractor's compiled kernels are loaded (or compiled)
        before the first frame is timed."""
        rng = np.random.default_rng(0)
        self.extractor.extract(rng.integers(0, 256, (120, 160), dtype=np.uint8))

    def close(self) -> None:
        """Release the extractor's threads, where it has some, and the stereo pyramids' thread."""
        close = getattr(self.extractor, "close", None)
        if close is not None:
            close()
        if self._stereo_pool is not None:
            self._stereo_pool.shutdown()
            self._stereo_pool = None

    def _depth(self, features: Features, right: Features | None, data: FrameData, gray: np.ndarray,
               pyramids: StereoPyramids | None) -> tuple[np.ndarray, np.ndarray]:
        n = len(features)
        kp = features.keypoints
        if self.mode == "rgbd" and data.depth is not None:
            cols = np.clip(np.round(kp[:, 0]).astype(np.int64), 0, data.depth.shape[1] - 1)
            rows = np.clip(np.round(kp[:, 1]).astype(np.int64), 0, data.depth.shape[0] - 1)
            depth = data.depth[rows, cols].astype(np.float64)
            depth[~np.isfinite(depth) | (depth <= 0)] = -1.0
            u_right = np.where(depth > 0, kp[:, 0] - self.camera.bf / np.where(depth > 0, depth, 1.0), -1.0)
            return depth, u_right
        if right is not None:
            u_right = match_stereo(features, right, gray, data.right, self.scales, self.camera.fx,
                                   self.stereo_threshold, pyramids=pyramids)
            disparity = kp[:, 0] - u_right
            depth = np.where((u_right >= 0) & (disparity > 0), self.camera.bf / np.maximum(disparity, 1e-6), -1.0)
            return depth, np.where(depth > 0, u_right, -1.0)
        return np.full(n, -1.0), np.full(n, -1.0)


def _sample_colors(image: np.ndarray, kp: np.ndarray) -> np.ndarray:
    cols = np.clip(np.round(kp[:, 0]).astype(np.int64), 0, image.shape[1] - 1)
    rows = np.clip(np.round(kp[:, 1]).astype(np.int64), 0, image.shape[0] - 1)
    sample = image[rows, cols]
    if image.ndim == 2:
        sample = np.repeat(sample[:, None], 3, axis=1)
    return sample[:, ::-1].astype(np.uint8)  # BGR -> RGB
