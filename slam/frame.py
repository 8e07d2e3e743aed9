"""A tracked frame: features plus per-keypoint depth / right coordinate, pose, and map associations."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slam.camera import Camera
from slam.features.base import Features
from slam.matching import KeypointGrid


@dataclass
class Frame:
    id: int
    timestamp: float
    features: Features
    camera: Camera
    depth: np.ndarray  # (N,) metres, <= 0 where unknown
    u_right: np.ndarray  # (N,) right-image x coordinate, < 0 where unknown (monocular observation)
    inv_sigma2: np.ndarray  # (N,) 1 / scale^(2*octave)
    T_cw: np.ndarray = field(default_factory=lambda: np.eye(4))
    point_ids: np.ndarray = field(default=None)  # (N,) int64 map point per keypoint, -1 = none
    outlier: np.ndarray = field(default=None)  # (N,) bool, set by pose optimisation
    colors: np.ndarray | None = None  # (N,3) uint8 RGB at each keypoint, to colour map points
    _grid: KeypointGrid | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.point_ids is None:
            self.point_ids = np.full(n, -1, dtype=np.int64)
        if self.outlier is None:
            self.outlier = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def keypoints(self) -> np.ndarray:
        return self.features.keypoints

    @property
    def descriptors(self) -> np.ndarray:
        return self.features.descriptors

    @property
    def octave(self) -> np.ndarray:
        return self.features.octave

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        R = self.T_cw[:3, :3]
        return -R.T @ self.T_cw[:3, 3]

    def grid(self) -> KeypointGrid:
        """Keypoints bucketed for radius searches; built once, as every search of this frame shares it."""
        if self._grid is None:
            self._grid = KeypointGrid.build(self.keypoints, self.camera.width, self.camera.height)
        return self._grid

    def matched(self) -> np.ndarray:
        return (self.point_ids >= 0) & ~self.outlier
