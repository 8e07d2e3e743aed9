"""Pinhole camera on undistorted (rectified) images; readers undistort before frames reach the core."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    # Stereo baseline in metres (the rectified pair's); for RGB-D a virtual one, 0 for monocular.
    baseline: float = 0.0

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def bf(self) -> float:
        """Baseline times focal length: disparity = bf / depth."""
        return self.baseline * self.fx

    def project(self, points_c: np.ndarray) -> np.ndarray:
        """Camera-frame points (N,3) to pixels (N,2); points must lie in front (z > 0)."""
        z = points_c[:, 2]
        return np.stack([self.fx * points_c[:, 0] / z + self.cx, self.fy * points_c[:, 1] / z + self.cy], axis=1)

    def project_world(self, T_cw: np.ndarray, points_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N,3) seen from pose T_cw: pixels (N,2) and depths (N,); pixels are finite but
        meaningless where depth <= 0, so callers test the depth."""
        Xc = points_w @ T_cw[:3, :3].T + T_cw[:3, 3]
        z = Xc[:, 2]
        safe = np.where(z > 1e-9, z, 1.0)
        uv = np.stack([self.fx * Xc[:, 0] / safe + self.cx, self.fy * Xc[:, 1] / safe + self.cy], axis=1)
        return uv, z

    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels (N,2) with depths (N,) to camera-frame points (N,3)."""
        x = (uv[:, 0] - self.cx) / self.fx * depth
        y = (uv[:, 1] - self.cy) / self.fy * depth
        return np.stack([x, y, depth], axis=1)

    def in_image(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        return (
            (uv[:, 0] >= margin)
            & (uv[:, 0] < self.width - margin)
            & (uv[:, 1] >= margin)
            & (uv[:, 1] < self.height - margin)
        )
