"""What the viewer draws, as plain arrays: picklable, so it crosses a process boundary cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slam.geometry import se3_inverse
from slam.map import Map


def _empty(*shape: int, dtype=np.float64) -> np.ndarray:
    return np.zeros((0, *shape), dtype=dtype)


@dataclass
class Snapshot:
    frame_index: int = -1
    timestamp: float = float("nan")
    state: str = ""
    keyframe_poses: np.ndarray = field(default_factory=lambda: _empty(4, 4))  # (K,4,4) T_wc
    trajectory: np.ndarray = field(default_factory=lambda: _empty(3))  # (N,3) centres of tracked frames
    points: np.ndarray = field(default_factory=lambda: _empty(3, dtype=np.float32))  # (M,3) world
    colors: np.ndarray = field(default_factory=lambda: _empty(3, dtype=np.uint8))  # (M,3) RGB
    current_pose: np.ndarray | None = None  # (4,4) T_wc of the frame just tracked; None when lost
    intrinsics: np.ndarray | None = None  # (6,) fx fy cx cy width height, for the frustums
    groundtruth: np.ndarray | None = None  # (G,3) ground-truth centres in the map's frame
    image: np.ndarray | None = None  # (H,W,3) uint8 BGR (or (H,W) gray) of the current frame
    keypoints: np.ndarray = field(default_factory=lambda: _empty(2, dtype=np.float32))  # (P,2) pixels
    inliers: np.ndarray = field(default_factory=lambda: _empty(dtype=bool))  # (P,) matched to map points
    outliers: np.ndarray = field(default_factory=lambda: _empty(dtype=bool))  # (P,) rejected by pose optimisation
    n_frames: int = 0  # frames processed so far
    n_inliers: int = 0
    fps: float = float("nan")
    final: bool = False  # the end-of-run state (after the final bundle adjustment)

    @property
    def n_keyframes(self) -> int:
        return len(self.keyframe_poses)

    @property
    def n_points(self) -> int:
        return len(self.points)


def copy_map(slam_map: Map) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keyframe poses T_wc (K,4,4), point xyz (M,3) float32 and RGB (M,3): copied under the lock, inverted
    outside it (the lock is held only for fancy-index copies, a millisecond for 100k points)."""
    with slam_map.lock:
        alive = np.array([kf.alive for kf in slam_map.keyframes], dtype=bool)
        T_cw = slam_map.kf_poses[: len(alive)][alive]
        ids = slam_map.alive_point_ids()
        xyz = slam_map.points.xyz[ids].astype(np.float32)
        rgb = slam_map.points.color[ids]
    return se3_inverse(T_cw).reshape(-1, 4, 4), xyz, rgb


def frame_features(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints of a slam.frame.Frame with its map-point inliers and the matches pose optimisation rejected."""
    if frame is None:
        return _empty(2, dtype=np.float32), _empty(dtype=bool), _empty(dtype=bool)
    inliers = frame.point_ids >= 0
    return frame.keypoints.astype(np.float32), inliers, frame.outlier & ~inliers
