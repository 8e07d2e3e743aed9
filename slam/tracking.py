"""Tracking: the pose of every frame against the map (ORB-SLAM's steps, RGB-D / stereo / monocular-ready).

track(frame): predict with a constant-velocity model -> match the last frame's points by projection
(PnP RANSAC against the reference keyframe when that fails) -> pose-only optimisation -> match the local
map by projection -> optimise again -> decide whether the frame becomes a keyframe.
No threads live here; the System calls track() from its tracking thread.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from slam.config import Config
from slam.frame import Frame
from slam.geometry import se3_inverse
from slam.local_map import LocalMap
from slam.map import KeyFrame, Map
from slam.matching import TH_HIGH, KeypointGrid, search_by_projection
from slam.optimizer import optimize_pose


class TrackingState(enum.Enum):
    NOT_INITIALIZED = "not_initialized"
    OK = "ok"
    LOST = "lost"


class KeyframeSink(Protocol):
    """What tracking needs from local mapping."""

    def idle(self) -> bool: ...

    def queued(self) -> int: ...

    def interrupt(self) -> None: ...

    def submit(self, kf_id: int) -> None: ...


@dataclass
class TrackResult:
    frame_id: int
    timestamp: float
    state: TrackingState
    T_cw: np.ndarray | None
    n_inliers: int = 0
    keyframe_id: int = -1
    inliers: np.ndarray | None = None  # (N,) bool per keypoint, for the viewer


@dataclass
class PoseRecord:
    """A frame's pose relative to its reference keyframe, so later map corrections reach it."""

    timestamp: float
    reference_kf: int
    T_c_ref: np.ndarray


@dataclass
class _Matches:
    """Per-keypoint 3D correspondences of the frame being tracked (map points and temporary ones)."""

    xyz: np.ndarray  # (N,3) world point matched to each keypoint
    has: np.ndarray = field(default=None)  # (N,) bool

    @staticmethod
    def empty(n: int) -> _Matches:
        return _Matches(np.zeros((n, 3)), np.zeros(n, dtype=bool))


class Tracker:
    def __init__(self, config: Config, slam_map: Map, sink: KeyframeSink, scales: np.ndarray):
        self.cfg = config.tracking
        self.mode = config.mode
        self.map = slam_map
        self.sink = sink
        self.scales = scales
        self.log_scale = np.log(scales[1]) if len(scales) > 1 else np.log(1.2)
        self.depth_threshold_factor = config.camera.depth_threshold
        self.depth_threshold = None  # metres (close points have reliable depth); set on the first frame
        self.state = TrackingState.NOT_INITIALIZED
        self.last: Frame | None = None
        self.last_matches: _Matches | None = None
        self.velocity: np.ndarray | None = None
        self.reference_kf = -1
        self.last_kf_frame = -1
        self.last_reloc_frame = -(10**9)
        self.records: list[PoseRecord] = []

    # ---- public --------------------------------------------------------------------------------------
    def track(self, frame: Frame) -> TrackResult:
        if self.depth_threshold is None:
            self.depth_threshold = frame.camera.baseline * self.depth_threshold_factor
        if self.state == TrackingState.NOT_INITIALIZED:
            return self._initialize(frame)
        matches = _Matches.empty(len(frame))
        ok = False
        if self.state == TrackingState.OK:
            if self.velocity is not None:
                ok = self._track_motion_model(frame, matches)
            if not ok:
                matches = _Matches.empty(len(frame))
                ok = self._track_reference_keyframe(frame, matches)
        else:
            ok = self._track_reference_keyframe(frame, matches)
            if ok:
                self.last_reloc_frame = frame.id
        n_inliers = self._track_local_map(frame, matches) if ok else 0
        ok = ok and n_inliers >= self._min_inliers(frame)
        if not ok:
            self.state = TrackingState.LOST
            self.velocity = None
            return TrackResult(frame.id, frame.timestamp, TrackingState.LOST, None, n_inliers)
        self.state = TrackingState.OK
        if self.last is not None and self.last.id == frame.id - 1:
            self.velocity = frame.T_cw @ se3_inverse(self.last.T_cw)
        else:
            self.velocity = None
        kf_id = self._maybe_insert_keyframe(frame, n_inliers)
        self._record(frame)
        self.last, self.last_matches = frame, matches
        return TrackResult(frame.id, frame.timestamp, TrackingState.OK, frame.T_cw.copy(), n_inliers, kf_id,
                           frame.point_ids >= 0)

    # ---- initialisation (RGB-D / stereo: one frame with depth) ----------------------------------------
    def _initialize(self, frame: Frame) -> TrackResult:
        with_depth = np.flatnonzero(frame.depth > 0)
        # ORB-SLAM2 starts a stereo / RGB-D map from a frame with more than 500 keypoints.
        if len(frame) <= 500 or len(with_depth) < 0.5 * min(len(frame), 1000):
            return TrackResult(frame.id, frame.timestamp, TrackingState.NOT_INITIALIZED, None)
        frame.T_cw = np.eye(4)
        kf_id = self._create_keyframe(frame, new_points=with_depth)
        self.reference_kf = kf_id
        self.state = TrackingState.OK
        self._record(frame)
        self.last, self.last_matches = frame, _Matches.empty(len(frame))
        self.last_matches.has[:] = False
        return TrackResult(frame.id, frame.timestamp, TrackingState.OK, frame.T_cw.copy(), len(with_depth), kf_id)

    # ---- step 1: against the last frame ---------------------------------------------------------------
    def _track_motion_model(self, frame: Frame, matches: _Matches) -> bool:
        frame.T_cw = self.velocity @ self.last.T_cw
        xyz, desc, octave, ids = self._last_frame_points()
        grid = frame.grid()
        th = self.cfg.projection_radius_px * (2.0 if self.mode == "mono" else 1.0)
        for widen in (1.0, 2.0):
            frame.point_ids[:] = -1
            matches.has[:] = False
            n = self._match_projected(frame, matches, grid, xyz, desc, octave, ids, th * widen)
            if n >= 20:
                break
        if n < 20:
            return False
        return self._optimize(frame, matches) >= 10

    def _last_frame_points(self):
        """Map points the last frame matched, plus (with depth) temporary points from its unmatched depths."""
        last = self.last
        kp_idx = np.flatnonzero(last.point_ids >= 0)
        ids = last.point_ids[kp_idx]
        with self.map.lock:
            alive = self.map.points.alive[ids]
            kp_idx, ids = kp_idx[alive], ids[alive]
            xyz = self.map.points.xyz[ids]
        if self.mode != "mono":
            extra = self._temporary_points(last)
            kp_idx = np.concatenate([kp_idx, extra])
            ids = np.concatenate([ids, np.full(len(extra), -1)])
            xyz = np.concatenate([xyz, _unproject_world(last, extra)])
        return xyz, last.descriptors[kp_idx], last.octave[kp_idx], ids

    def _temporary_points(self, last: Frame) -> np.ndarray:
        """Visual-odometry points, as ORB-SLAM's UpdateLastFrame: close depths with no map point yet."""
        free = np.flatnonzero((last.depth > 0) & (last.point_ids < 0))
        free = free[np.argsort(last.depth[free], kind="stable")]
        close = last.depth[free] <= self.depth_threshold
        count = max(int(close.sum()), 100)
        return free[:count]

    def _match_projected(self, frame: Frame, matches: _Matches, grid: KeypointGrid, xyz: np.ndarray,
                         desc: np.ndarray, octave: np.ndarray, ids: np.ndarray, th: float) -> int:
        uv, z = _project(frame, xyz)
        ok = (z > 0) & frame.camera.in_image(uv)
        sel = np.flatnonzero(ok)
        radius = th * self.scales[octave[sel]]
        taken = matches.has.copy()
        pt, kp = search_by_projection(uv[sel], radius, octave[sel], desc[sel], frame.keypoints, frame.octave,
                                      frame.descriptors, grid, taken, TH_HIGH, ratio=1.0, octave_tol=1)
        src = sel[pt]
        matches.has[kp] = True
        matches.xyz[kp] = xyz[src]
        frame.point_ids[kp] = ids[src]
        return len(kp)

    # ---- fallback: against the reference keyframe, by descriptors and PnP RANSAC ------------------------
    def _track_reference_keyframe(self, frame: Frame, matches: _Matches) -> bool:
        if self.reference_kf < 0:
            return False
        local = LocalMap.gather(self.map, np.zeros(0, np.int64), self.reference_kf, max_keyframes=10)
        if len(local.point_ids) < 10 or len(frame) < 10:
            return False
        knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(frame.descriptors, local.descriptors, k=2)
        pairs = [(m[0].queryIdx, m[0].trainIdx, m[0].distance) for m in knn
                 if len(m) == 2 and m[0].distance < 0.75 * m[1].distance and m[0].distance <= TH_HIGH]
        if len(pairs) < 15:
            return False
        kp_idx, pt_idx, dist = (np.array(v) for v in zip(*pairs))
        # One keypoint per map point: the closest descriptor wins.
        order = np.argsort(dist, kind="stable")
        _, first = np.unique(pt_idx[order], return_index=True)
        keep = order[first]
        kp_idx, pt_idx = kp_idx[keep].astype(np.int64), pt_idx[keep].astype(np.int64)
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            local.xyz[pt_idx].astype(np.float64), frame.keypoints[kp_idx].astype(np.float64), frame.camera.K, None,
            iterationsCount=300, reprojectionError=self.cfg.ransac_threshold_px, confidence=0.999,
            flags=cv2.USAC_MAGSAC,
        )
        if not ok or inliers is None or len(inliers) < 15:
            return False
        inl = inliers.ravel()
        T = np.eye(4)
        T[:3, :3] = cv2.Rodrigues(rvec)[0]
        T[:3, 3] = tvec.ravel()
        frame.T_cw = T
        frame.point_ids[:] = -1
        frame.point_ids[kp_idx[inl]] = local.point_ids[pt_idx[inl]]
        matches.has[kp_idx[inl]] = True
        matches.xyz[kp_idx[inl]] = local.xyz[pt_idx[inl]]
        return self._optimize(frame, matches) >= 10

    # ---- step 2: against the local map ----------------------------------------------------------------
    def _track_local_map(self, frame: Frame, matches: _Matches) -> int:
        matched = frame.point_ids[frame.point_ids >= 0]
        local = LocalMap.gather(self.map, matched, self.reference_kf)
        self.reference_kf = local.reference_kf
        uv, z = _project(frame, local.xyz)
        center = frame.center
        ray = local.xyz - center
        dist = np.linalg.norm(ray, axis=1)
        cos = np.einsum("ij,ij->i", ray, local.normals) / np.maximum(dist, 1e-12)
        visible = ((z > 0) & frame.camera.in_image(uv) & (dist >= 0.8 * local.min_dist)
                   & (dist <= 1.2 * local.max_dist) & (cos >= 0.5))
        already = np.isin(local.point_ids, matched)
        candidates = np.flatnonzero(visible & ~already)
        pred_octave = np.clip(np.ceil(np.log(local.max_dist[candidates] / np.maximum(dist[candidates], 1e-9))
                                      / self.log_scale), 0, len(self.scales) - 1).astype(np.int64)
        th = self.cfg.local_map_search_factor
        if frame.id - self.last_reloc_frame < 2:
            th *= 5.0  # the pose is less certain right after relocalisation
        radius = th * np.where(cos[candidates] > 0.998, 2.5, 4.0) * self.scales[pred_octave]
        grid = frame.grid()
        pt, kp = search_by_projection(uv[candidates], radius, pred_octave, local.descriptors[candidates],
                                      frame.keypoints, frame.octave, frame.descriptors, grid, matches.has.copy(),
                                      TH_HIGH, ratio=0.8, octave_tol=1)
        src = candidates[pt]
        frame.point_ids[kp] = local.point_ids[src]
        matches.has[kp] = True
        matches.xyz[kp] = local.xyz[src]
        self._optimize(frame, matches)
        # Temporary (visual odometry) points have served the pose; only map points stay matched.
        frame.point_ids[~matches.has] = -1
        found = frame.point_ids[frame.point_ids >= 0]
        with self.map.lock:
            self.map.points.visible[local.point_ids[visible]] += 1
            self.map.points.found[found] += 1
        return int(np.count_nonzero(frame.point_ids >= 0))

    def _optimize(self, frame: Frame, matches: _Matches) -> int:
        idx = np.flatnonzero(matches.has)
        if len(idx) < 6:
            return 0
        result = optimize_pose(frame.T_cw, matches.xyz[idx], frame.keypoints[idx].astype(np.float64),
                               frame.u_right[idx], frame.inv_sigma2[idx], frame.camera)
        frame.T_cw = _orthonormalized(result.T_cw)
        outliers = idx[~result.inliers]
        matches.has[outliers] = False
        frame.point_ids[outliers] = -1
        return int(result.n_inliers)

    def _min_inliers(self, frame: Frame) -> int:
        if frame.id - self.last_reloc_frame < 30:
            return 50
        return self.cfg.min_tracked_points

    # ---- keyframes ------------------------------------------------------------------------------------
    def _maybe_insert_keyframe(self, frame: Frame, n_inliers: int) -> int:
        if not self._need_keyframe(frame, n_inliers):
            return -1
        depth_order = np.argsort(np.where(frame.depth > 0, frame.depth, np.inf), kind="stable")
        candidates = depth_order[(frame.depth[depth_order] > 0) & (frame.point_ids[depth_order] < 0)]
        close = frame.depth[candidates] <= self.depth_threshold
        new_points = candidates[: max(int(close.sum()), min(100, len(candidates)))]
        return self._create_keyframe(frame, new_points)

    def _need_keyframe(self, frame: Frame, n_inliers: int) -> bool:
        cfg = self.cfg
        n_kfs = len(self.map.keyframes)
        if frame.id - self.last_reloc_frame < cfg.keyframe_max_frames and n_kfs > cfg.keyframe_max_frames:
            return False
        min_obs = 3 if n_kfs > 2 else 2
        with self.map.lock:
            ref_ids = self.map.keyframes[self.reference_kf].point_ids
            ref_ids = ref_ids[ref_ids >= 0]
            p = self.map.points
            ref_matches = int(np.count_nonzero(p.alive[ref_ids] & (p.n_obs[ref_ids] >= min_obs)))
        idle = self.sink.idle()
        close = (frame.depth > 0) & (frame.depth < self.depth_threshold)
        tracked_close = int(np.count_nonzero(close & (frame.point_ids >= 0)))
        untracked_close = int(np.count_nonzero(close & (frame.point_ids < 0)))
        need_close = self.mode != "mono" and tracked_close < cfg.close_tracked_min and \
            untracked_close > cfg.close_untracked_min
        ratio = cfg.keyframe_tracked_ratio if n_kfs >= 2 else 0.4
        if self.mode == "mono":
            ratio = 0.9
        since = frame.id - self.last_kf_frame
        c1a = since >= cfg.keyframe_max_frames
        # ORB-SLAM waits for local mapping to be idle; we also insert, at a bounded rate, while it is busy
        # with nothing queued: on two cores mapping is rarely idle, and sparse keyframes cost accuracy.
        c1b = since >= cfg.keyframe_min_frames and (idle or (since >= cfg.keyframe_busy_frames
                                                             and self.sink.queued() == 0))
        c1c = self.mode != "mono" and (n_inliers < 0.25 * ref_matches or need_close)
        c2 = (n_inliers < ratio * ref_matches or need_close) and n_inliers > 15
        if not ((c1a or c1b or c1c) and c2):
            return False
        if idle:
            return True
        self.sink.interrupt()
        return self.mode != "mono" and self.sink.queued() < 3

    def _create_keyframe(self, frame: Frame, new_points: np.ndarray) -> int:
        kf = KeyFrame(-1, frame.id, frame.timestamp, frame.keypoints, frame.octave, frame.descriptors,
                      frame.u_right, frame.depth, frame.inv_sigma2, np.full(len(frame), -1, dtype=np.int64),
                      colors=frame.colors)
        matched = np.flatnonzero(frame.point_ids >= 0)
        xyz = _unproject_world(frame, new_points)
        with self.map.lock:
            kf_id = self.map.add_keyframe(kf, frame.T_cw.copy())
            alive = self.map.points.alive[frame.point_ids[matched]]
            matched = matched[alive]
            self.map.add_observations(np.full(len(matched), kf_id), matched, frame.point_ids[matched])
            ids = self.map.add_points(xyz, frame.descriptors[new_points], kf_id, new_points,
                                      None if frame.colors is None else frame.colors[new_points])
            self.map.update_point_geometry(ids)
        frame.point_ids[new_points] = ids
        self.reference_kf = kf_id
        self.last_kf_frame = frame.id
        self.sink.submit(kf_id)
        return kf_id

    def _record(self, frame: Frame) -> None:
        with self.map.lock:
            T_ref_w = self.map.keyframe_pose(self.reference_kf)
        self.records.append(PoseRecord(frame.timestamp, self.reference_kf, frame.T_cw @ se3_inverse(T_ref_w)))


def _orthonormalized(T: np.ndarray) -> np.ndarray:
    """Snap the rotation back onto SO(3): products of poses accumulate rounding drift."""
    U, _, Vt = np.linalg.svd(T[:3, :3])
    out = T.copy()
    out[:3, :3] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return out


def _project(frame: Frame, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return frame.camera.project_world(frame.T_cw, xyz)


def _unproject_world(frame: Frame, kp_idx: np.ndarray) -> np.ndarray:
    Xc = frame.camera.unproject(frame.keypoints[kp_idx].astype(np.float64), frame.depth[kp_idx])
    T_wc = se3_inverse(frame.T_cw)
    return Xc @ T_wc[:3, :3].T + T_wc[:3, 3]
