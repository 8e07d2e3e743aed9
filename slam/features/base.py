"""The feature protocol: an extractor turns an image into Features (arrays, one row per keypoint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


@dataclass
class Features:
    keypoints: np.ndarray  # (N,2) float32 pixel coordinates
    octave: np.ndarray  # (N,) int32 pyramid level
    angle: np.ndarray  # (N,) float32 degrees
    response: np.ndarray  # (N,) float32
    descriptors: np.ndarray  # (N,D) uint8 for binary, float32 L2-normalised otherwise

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def binary(self) -> bool:
        return self.descriptors.dtype == np.uint8

    def subset(self, index: np.ndarray) -> Features:
        return Features(
            self.keypoints[index], self.octave[index], self.angle[index], self.response[index], self.descriptors[index]
        )


class Extractor(Protocol):
    """Learned single-scale extractors report scale_factor 1 and n_levels 1 (every keypoint at octave 0)."""

    scale_factor: float
    n_levels: int
    descriptor_size: int
    descriptor_dtype: np.dtype

    def extract(self, image: np.ndarray) -> Features: ...


def extract_batch(extractor: Extractor, images: list[np.ndarray]) -> list[Features]:
    """Features of several images: one network pass where the extractor batches, else one image at a time."""
    batched = getattr(extractor, "extract_batch", None)
    if batched is not None:
        return batched(images)
    return [extractor.extract(image) for image in images]


def empty_features(descriptor_size: int, dtype) -> Features:
    return Features(np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32),
                    np.zeros(0, np.float32), np.zeros((0, descriptor_size), dtype))


def to_gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def level_scales(scale_factor: float, n_levels: int) -> np.ndarray:
    """Scale of each pyramid level (1, s, s^2, ...)."""
    return scale_factor ** np.arange(n_levels, dtype=np.float64)
