"""SIFT and RootSIFT (OpenCV), as float32 L2-normalised descriptors.

RootSIFT (Arandjelovic & Zisserman, CVPR 2012) L1-normalises each SIFT descriptor and takes the square
root, so that comparing with the L2 distance compares histograms with the Hellinger kernel.
For the SLAM pipeline each keypoint's size is mapped to the nearest level of the configured pyramid.
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.features.base import Features, empty_features, to_gray


class SiftExtractor:
    descriptor_size = 128
    descriptor_dtype = np.dtype(np.float32)

    def __init__(self, n_features: int = 1000, root: bool = False, scale_factor: float = 1.2, n_levels: int = 8):
        self.n_features = n_features
        self.root = root
        self.scale_factor = scale_factor
        self.n_levels = n_levels
        self._sift = cv2.SIFT_create(nfeatures=n_features)

    def extract(self, image: np.ndarray) -> Features:
        keypoints, descriptors = self._sift.detectAndCompute(to_gray(image), None)
        if not keypoints:
            return empty_features(self.descriptor_size, self.descriptor_dtype)
        pts = np.asarray(cv2.KeyPoint_convert(keypoints), dtype=np.float32).reshape(-1, 2)
        size = np.fromiter((k.size for k in keypoints), dtype=np.float64, count=len(keypoints))
        angle = np.fromiter((k.angle for k in keypoints), dtype=np.float32, count=len(keypoints))
        response = np.fromiter((k.response for k in keypoints), dtype=np.float32, count=len(keypoints))
        return Features(pts, self._levels(size), angle, response, normalize(descriptors, self.root))

    def _levels(self, size: np.ndarray) -> np.ndarray:
        level = np.round(np.log(size / size.min()) / np.log(self.scale_factor))
        return np.clip(level, 0, self.n_levels - 1).astype(np.int32)


def normalize(descriptors: np.ndarray, root: bool) -> np.ndarray:
    """L2-normalised SIFT, or RootSIFT (square root of the L1-normalised histogram, L2-normalised by construction)."""
    d = descriptors.astype(np.float32)
    if root:
        d = np.sqrt(d / np.maximum(d.sum(axis=1, keepdims=True), 1e-12))
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
