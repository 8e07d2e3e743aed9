"""Virtual cameras for drawing the map: an overview framing the whole scene, or one following the camera.

Conventions are the map's (OpenCV): x right, y down, z forward; the map's origin is the first camera, so "up"
is -y. The same ViewCamera drives open3d and the numpy renderer, and tests project with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UP = np.array([0.0, -1.0, 0.0])
FOV_DEG = 50.0
ELEVATION_DEG = 50.0  # the overview looks down at the scene from behind the first camera


@dataclass(frozen=True)
class ViewCamera:
    K: np.ndarray  # (3,3)
    T_cw: np.ndarray  # (4,4) world to view camera
    width: int
    height: int

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N,2) and depths (N,) of world points; pixels are meaningless where depth <= 0."""
        Xc = np.asarray(xyz, float).reshape(-1, 3) @ self.T_cw[:3, :3].T + self.T_cw[:3, 3]
        z = Xc[:, 2]
        safe = np.where(np.abs(z) > 1e-12, z, 1e-12)
        uv = Xc[:, :2] / safe[:, None] * [self.K[0, 0], self.K[1, 1]] + [self.K[0, 2], self.K[1, 2]]
        return uv, z


def look_at(
    eye: np.ndarray, target: np.ndarray, up: np.ndarray, width: int, height: int, fov_deg: float = FOV_DEG
) -> ViewCamera:
    """A camera at `eye` looking at `target`, `up` pointing up in the image; fov is the smaller image side's."""
    z = _unit(np.asarray(target, float) - eye)
    x = np.cross(-np.asarray(up, float), z)
    if np.linalg.norm(x) < 1e-9:  # looking along up: any sideways axis will do
        x = np.cross(z, [1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.cross(z, [0.0, 0.0, 1.0])
    x = _unit(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z])
    T[:3, 3] = -T[:3, :3] @ eye
    f = 0.5 * min(width, height) / np.tan(np.radians(fov_deg) / 2)
    K = np.array([[f, 0.0, width / 2 - 0.5], [0.0, f, height / 2 - 0.5], [0.0, 0.0, 1.0]])
    return ViewCamera(K, T, int(width), int(height))


def robust_bounds(*arrays: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and radius of the bulk of the given points: stray map points do not shrink the picture."""
    parts = [np.asarray(a, float).reshape(-1, 3) for a in arrays if a is not None and len(a)]
    if not parts:
        return np.zeros(3), 1.0
    xyz = np.concatenate(parts)
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    if len(xyz) == 0:
        return np.zeros(3), 1.0
    lo, hi = np.percentile(xyz, [2, 98], axis=0) if len(xyz) > 50 else (xyz.min(axis=0), xyz.max(axis=0))
    return (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, 0.05)


def overview(centre: np.ndarray, radius: float, width: int, height: int) -> ViewCamera:
    """The whole scene from above and behind the map's origin."""
    el = np.radians(ELEVATION_DEG)
    direction = np.array([0.0, -np.sin(el), -np.cos(el)])
    distance = radius / np.sin(np.radians(FOV_DEG) / 2)
    return look_at(centre + distance * direction, centre, UP, width, height)


def follow(T_wc: np.ndarray, scale: float, width: int, height: int) -> ViewCamera:
    """Just behind and above a camera, looking where it looks."""
    R, c = T_wc[:3, :3], T_wc[:3, 3]
    eye = c + R @ np.array([0.0, -0.6, -1.6]) * scale
    return look_at(eye, c + R @ np.array([0.0, 0.0, 1.5]) * scale, R @ UP, width, height)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
