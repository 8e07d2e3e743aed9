"""A snapshot as things to draw: coloured points and coloured line segments (frustums, trajectories)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.viewer.snapshot import Snapshot
from slam.viewer.view import ViewCamera, follow, overview, robust_bounds

# RGB in [0, 1]
TRAJECTORY_RGB = np.array([1.0, 0.55, 0.0])
KEYFRAME_RGB = np.array([0.2, 0.45, 1.0])
CURRENT_RGB = np.array([0.1, 0.95, 0.2])
GROUNDTRUTH_RGB = np.array([0.85, 0.85, 0.85])
BACKGROUND_RGB = np.array([0.08, 0.08, 0.1])
FRUSTUM_FRACTION = 0.025  # keyframe frustum depth as a fraction of the scene radius
DASH_FRACTION = 0.015  # ground-truth dash length: dashed, the estimate lying on it stays visible
DEFAULT_INTRINSICS = np.array([640.0, 640.0, 319.5, 239.5, 640.0, 480.0])


@dataclass
class Scene:
    points: np.ndarray  # (M,3)
    point_colors: np.ndarray  # (M,3) RGB in [0,1]
    segments: np.ndarray  # (S,2,3), drawn in order (later on top in the numpy renderer)
    segment_colors: np.ndarray  # (S,3) RGB in [0,1]
    centre: np.ndarray  # bulk of the scene, for framing
    radius: float


def scene_bounds(snapshot: Snapshot) -> tuple[np.ndarray, float]:
    return robust_bounds(snapshot.points, snapshot.trajectory, snapshot.keyframe_poses[:, :3, 3], snapshot.groundtruth)


def build_scene(snapshot: Snapshot) -> Scene:
    centre, radius = scene_bounds(snapshot)
    size = FRUSTUM_FRACTION * radius
    intrinsics = DEFAULT_INTRINSICS if snapshot.intrinsics is None else snapshot.intrinsics
    parts = [
        (dashed(polyline(snapshot.groundtruth), DASH_FRACTION * radius), GROUNDTRUTH_RGB),
        (frustums(snapshot.keyframe_poses, intrinsics, size), KEYFRAME_RGB),
        (polyline(snapshot.trajectory), TRAJECTORY_RGB),
    ]
    if snapshot.current_pose is not None:
        parts.append((frustums(snapshot.current_pose[None], intrinsics, 2.0 * size), CURRENT_RGB))
    segments = np.concatenate([p for p, _ in parts])
    colors = np.concatenate([np.tile(c, (len(p), 1)) for p, c in parts])
    return Scene(
        np.asarray(snapshot.points, float), snapshot.colors.astype(float) / 255.0, segments, colors, centre, radius
    )


def overview_view(snapshot: Snapshot, width: int, height: int) -> ViewCamera:
    centre, radius = scene_bounds(snapshot)
    return overview(centre, radius, width, height)


def follow_view(snapshot: Snapshot, width: int, height: int) -> ViewCamera | None:
    if snapshot.current_pose is None:
        return None
    _, radius = scene_bounds(snapshot)
    return follow(snapshot.current_pose, 0.25 * radius, width, height)


def polyline(xyz: np.ndarray | None) -> np.ndarray:
    """Consecutive positions (N,3) as segments (N-1,2,3)."""
    if xyz is None or len(xyz) < 2:
        return np.zeros((0, 2, 3))
    xyz = np.asarray(xyz, float)
    return np.stack([xyz[:-1], xyz[1:]], axis=1)


def dashed(segments: np.ndarray, dash: float) -> np.ndarray:
    """Every other stretch of `dash` length (by distance along the polyline) of consecutive segments."""
    if len(segments) == 0:
        return segments
    along = np.cumsum(np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1))
    return segments[(np.floor(along / max(dash, 1e-9)) % 2) == 0]


def frustums(poses_wc: np.ndarray, intrinsics: np.ndarray, depth: float) -> np.ndarray:
    """Camera pyramids (8 segments each: 4 edges from the centre, 4 around the image) for poses (K,4,4)."""
    if len(poses_wc) == 0:
        return np.zeros((0, 2, 3))
    fx, fy, cx, cy, w, h = intrinsics
    u = np.array([0.0, w, w, 0.0])
    v = np.array([0.0, 0.0, h, h])
    corners_c = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, np.full(4, depth)], axis=1)  # (4,3)
    R, t = poses_wc[:, :3, :3], poses_wc[:, :3, 3]
    corners = np.einsum("kij,cj->kci", R, corners_c) + t[:, None]  # (K,4,3)
    centre = np.repeat(t[:, None], 4, axis=1)
    sides = np.stack([centre, corners], axis=2)  # (K,4,2,3)
    rim = np.stack([corners, np.roll(corners, -1, axis=1)], axis=2)
    return np.concatenate([sides, rim], axis=1).reshape(-1, 2, 3)
