"""Snapshots built in the tracking thread: the trajectory grows every frame (a copy of one position); the map
is copied only when a snapshot is due (at most every `interval_s`, or every `every_frames` frames)."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from slam.camera import Camera
from slam.geometry import se3_inverse
from slam.io.base import FrameData
from slam.tracking import TrackResult
from slam.trajectory import Trajectory
from slam.viewer.align import align_rigid, align_to_first_pose
from slam.viewer.snapshot import Snapshot, copy_map, frame_features

_FPS_WINDOW = 30  # frames in the on-screen frame rate


class SnapshotPublisher:
    def __init__(
        self, system, camera: Camera, groundtruth: Trajectory | None, interval_s: float = 0.0, every_frames: int = 0
    ):
        self.system = system
        self.intrinsics = np.array([camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height], float)
        self.groundtruth = groundtruth
        self.interval_s = interval_s
        self.every_frames = every_frames
        self.n_frames = 0
        self._centres = np.empty((1024, 3))
        self._n_tracked = 0
        self._gt_live: np.ndarray | None = None
        self._last_built = -np.inf
        self._done_at: deque[float] = deque(maxlen=_FPS_WINDOW)
        self._last: tuple[FrameData, TrackResult] | None = None

    def observe(self, data: FrameData, result: TrackResult) -> None:
        """Every frame: remember its camera centre (and, at the first tracked frame, place the ground truth)."""
        self.n_frames += 1
        self._done_at.append(time.perf_counter())
        self._last = (data, result)
        if result.T_cw is None:
            return
        T_wc = se3_inverse(result.T_cw)
        if self._n_tracked == len(self._centres):
            self._centres = np.concatenate([self._centres, np.empty_like(self._centres)])
        self._centres[self._n_tracked] = T_wc[:3, 3]
        self._n_tracked += 1
        if self._gt_live is None and self.groundtruth is not None:
            self._gt_live = align_to_first_pose(self.groundtruth, data.timestamp, T_wc)

    def due(self) -> bool:
        if self.every_frames > 0:
            return (self.n_frames - 1) % self.every_frames == 0
        return time.perf_counter() - self._last_built >= self.interval_s

    def build(self) -> Snapshot:
        """The system as it is now, around the last observed frame."""
        data, result = self._last
        self._last_built = time.perf_counter()
        keyframes, xyz, rgb = copy_map(self.system.map)
        frame = getattr(self.system, "last_frame", None)
        keypoints, inliers, outliers = frame_features(
            frame if frame is not None and frame.id == result.frame_id else None
        )
        return Snapshot(
            frame_index=data.index,
            timestamp=data.timestamp,
            state=result.state.value,
            keyframe_poses=keyframes,
            trajectory=self._centres[: self._n_tracked].copy(),
            points=xyz,
            colors=rgb,
            current_pose=None if result.T_cw is None else se3_inverse(result.T_cw),
            intrinsics=self.intrinsics,
            groundtruth=self._gt_live,
            image=data.image,
            keypoints=keypoints,
            inliers=inliers,
            outliers=outliers,
            n_frames=self.n_frames,
            n_inliers=result.n_inliers,
            fps=self.fps(),
        )

    def final(self) -> Snapshot:
        """After the run: every frame through its (bundle-adjusted) keyframe, ground truth fitted as the ATE."""
        trajectory = self.system.trajectory()
        keyframes, xyz, rgb = copy_map(self.system.map)
        gt = None
        if self.groundtruth is not None and len(trajectory):
            gt = align_rigid(self.groundtruth, trajectory.timestamps, trajectory.positions)
        data, result = self._last if self._last is not None else (None, None)
        return Snapshot(
            frame_index=-1 if data is None else data.index,
            timestamp=float("nan") if data is None else data.timestamp,
            state="" if result is None else result.state.value,
            keyframe_poses=keyframes,
            trajectory=trajectory.positions.copy(),
            points=xyz,
            colors=rgb,
            current_pose=trajectory.poses[-1].copy() if len(trajectory) else None,
            intrinsics=self.intrinsics,
            groundtruth=gt,
            n_frames=self.n_frames,
            fps=self.fps(),
            final=True,
        )

    def restart_rate(self) -> None:
        self._done_at.clear()

    def fps(self) -> float:
        t = self._done_at
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else float("nan")
