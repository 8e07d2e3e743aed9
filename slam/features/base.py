"""The feature protocol: an extractor turns an image into Features (arrays, one row per keypoint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
    scale_factor: float
    n_levels: int

    def extract(self, image: np.ndarray) -> Features: ...


def level_scales(scale_factor: float, n_levels: int) -> np.ndarray:
    """Scale of each pyramid level (1, s, s^2, ...)."""
    return scale_factor ** np.arange(n_levels, dtype=np.float64)
