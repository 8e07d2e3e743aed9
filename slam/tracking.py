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

import numpy as np

from slam.config import Config
from slam.features.orb import mean_window_scale as orb_mean_window_scale
from slam.frame import Frame
from slam.geometry import se3_inverse
from slam.initializer import TwoViewSettings, match_for_initialization, reconstruct_two_view
from slam.local_map import LocalMap
from slam.map import KeyFrame, Map, id_mask
from slam.matching import KeypointGrid, rotation_consistent, search_by_projection
from slam.optimizer import local_bundle_adjustment, optimize_pose
from slam.relocalization import match_descriptors, pnp_ransac


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


class PlaceCandidates(Protocol):
    """What relocalisation needs from place recognition."""

    def candidates(self, descriptors: np.ndarray, max_results: int) -> list[int]: ...


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
class FrameObservations:
    """The map points a tracked frame matched, kept (compactly) to re-estimate its pose against the final map."""

    point_ids: np.ndarray  # (M,) int32
    uv: np.ndarray  # (M,2) float32
    u_right: np.ndarray  # (M,) float32, < 0 for monocular observations
    inv_sigma2: np.ndarray  # (M,) float32

    @staticmethod
    def of(frame: Frame) -> FrameObservations:
        idx = np.flatnonzero(frame.point_ids >= 0)
        return FrameObservations(frame.point_ids[idx].astype(np.int32), frame.keypoints[idx].astype(np.float32),
                                 frame.u_right[idx].astype(np.float32), frame.inv_sigma2[idx].astype(np.float32))


@dataclass
class PoseRecord:
    """A frame's pose relative to its reference keyframe, so later map corrections reach it."""

    timestamp: float
    reference_kf: int
    T_c_ref: np.ndarray
    observations: FrameObservations | None = None


@dataclass
class _Matches:
    """Per-keypoint 3D correspondences of the frame being tracked (map points and temporary ones)."""

    xyz: np.ndarray  # (N,3) world point matched to each keypoint
    has: np.ndarray = field(default=None)  # (N,) bool

    @staticmethod
    def empty(n: int) -> _Matches:
        return _Matches(np.zeros((n, 3)), np.zeros(n, dtype=bool))


class Tracker:
    def __init__(self, config: Config, slam_map: Map, sink: KeyframeSink, scales: np.ndarray,
                 places: PlaceCandidates | None = None):
        self.cfg = config.tracking
        self.places = places
        self._map_generation = slam_map.generation
        self.mode = config.mode
        self.map = slam_map
        self.sink = sink
        self.scales = scales
        self.log_scale = np.log(scales[1]) if len(scales) > 1 else np.log(1.2)
        self.th_high = slam_map.match_thresholds.high  # Hamming (ORB) or L2 (learned descriptors)
        # ORB-SLAM2 starts a stereo / RGB-D map from a frame with more than 500 keypoints (of its 1000-2000);
        # single-level learned detectors keep only confident points (SuperPoint: 200-400 on TUM teddy), so they
        # need fewer. The bound follows the feature budget: with features.n_features=500 a fixed 500 could never
        # be passed (teddy tracked 0 of 193 frames), so it is at most half the budget.
        self.init_min_keypoints = min(500 if len(scales) > 1 else 100, config.features.n_features // 2)
        # ORB's search windows grow with the keypoint's octave (radius * scale^octave); single-level keypoints
        # get the window ORB gives on average over its keypoints (1.74 with the default 1.2 x 8 levels).
        self.motion_window_scale = 1.0 if len(scales) > 1 else orb_mean_window_scale()
        self.depth_threshold_factor = config.camera.depth_threshold
        self.depth_threshold = None  # metres (close points have reliable depth); set on the first frame
        self.state = TrackingState.NOT_INITIALIZED
        self.last: Frame | None = None
        self.last_matches: _Matches | None = None
        self.velocity: np.ndarray | None = None
        self.reference_kf = -1
        self.last_kf_frame = -1
        self.last_kf_time = -np.inf
        self.last_reloc_frame = -(10**9)
        self.records: list[PoseRecord] = []
        self.init_settings = TwoViewSettings(min_parallax_deg=self.cfg.init_min_parallax_deg)
        self._init_ref: Frame | None = None  # monocular: the first view of the two-view initialisation
        self._init_prev_uv: np.ndarray | None = None  # where each reference keypoint was last matched
        self.initialized_frame = -1  # frame id at which the map was started
        self.init_failure = ""  # why the last frame did not start the map (reported when none ever did)
        self.localize_only = False  # tracking against a loaded map that stays fixed
        # A sliding-window map (VO mode) forgets points, so frames keep their observations only without one.
        self.keep_observations = self.cfg.final_pose_refinement and config.mapping.max_keyframes == 0

    # ---- public --------------------------------------------------------------------------------------
    def track(self, frame: Frame) -> TrackResult:
        if self.depth_threshold is None:
            self.depth_threshold = frame.camera.baseline * self.depth_threshold_factor
        if self.map.generation != self._map_generation:
            self._follow_map_correction()
        if self.state == TrackingState.NOT_INITIALIZED:
            if self.mode == "mono":
                return self._initialize_monocular(frame)
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
            ok = self._relocalize(frame, matches)
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

    def start_in_map(self, localize_only: bool) -> None:
        """Track against a map built before (loaded from a file): lost until relocalised; with
        `localize_only` the map stays as it is (no keyframes are added)."""
        alive = self.map.alive_keyframe_ids()
        self.reference_kf = int(alive[-1]) if len(alive) else -1
        self.state = TrackingState.LOST if len(alive) else TrackingState.NOT_INITIALIZED
        self.localize_only = localize_only

    def _follow_map_correction(self) -> None:
        """Loop closing moved the keyframes: place the last frame again through its reference keyframe."""
        self._map_generation = self.map.generation
        if self.last is not None and self.records:
            record = self.records[-1]
            with self.map.lock:
                self.last.T_cw = record.T_c_ref @ self.map.keyframe_pose(record.reference_kf)

    # ---- initialisation (RGB-D / stereo: one frame with depth) ----------------------------------------
    def _initialize(self, frame: Frame) -> TrackResult:
        with_depth = np.flatnonzero(frame.depth > 0)
        if len(frame) <= self.init_min_keypoints or len(with_depth) < 0.5 * min(len(frame), 1000):
            self.init_failure = (f"{len(frame)} keypoints, {len(with_depth)} with depth (a map starts from more than "
                                 f"{self.init_min_keypoints} keypoints, half of them with depth)")
            return TrackResult(frame.id, frame.timestamp, TrackingState.NOT_INITIALIZED, None)
        frame.T_cw = np.eye(4)
        kf_id = self._create_keyframe(frame, new_points=with_depth)
        self.reference_kf = kf_id
        self.initialized_frame = frame.id
        self.state = TrackingState.OK
        self._record(frame)
        self.last, self.last_matches = frame, _Matches.empty(len(frame))
        self.last_matches.has[:] = False
        return TrackResult(frame.id, frame.timestamp, TrackingState.OK, frame.T_cw.copy(), len(with_depth), kf_id)

    # ---- initialisation (monocular: two views with enough parallax) ------------------------------------
    def _initialize_monocular(self, frame: Frame) -> TrackResult:
        not_yet = TrackResult(frame.id, frame.timestamp, TrackingState.NOT_INITIALIZED, None)
        s = self.init_settings
        ref = self._init_ref
        if ref is None or len(frame) <= s.min_matches:
            if len(frame) > s.min_matches:
                self._set_init_reference(frame)
            else:
                self.init_failure = f"{len(frame)} keypoints (two-view initialisation needs more than {s.min_matches})"
            return not_yet
        i1, i2 = match_for_initialization(ref.keypoints, ref.octave, ref.descriptors, ref.features.angle,
                                          self._init_prev_uv, frame.keypoints, frame.octave, frame.descriptors,
                                          frame.features.angle, frame.grid(), s.search_radius_px,
                                          self.map.match_thresholds.low)
        if len(i1) < s.min_matches:
            self._set_init_reference(frame)  # the views share too little: start over from this one
            self.init_failure = (f"{len(i1)} matches to the reference view "
                                 f"(two-view initialisation needs {s.min_matches})")
            return not_yet
        self._init_prev_uv[i1] = frame.keypoints[i2]
        view, reason = reconstruct_two_view(ref.keypoints[i1], frame.keypoints[i2], frame.camera.K,
                                            1.0 / frame.inv_sigma2[i2], s)
        if view is None:
            self.init_failure = f"two-view reconstruction refused ({reason})"
            return not_yet
        built = self._refine_two_view(ref, frame, i1[view.good], i2[view.good], view)
        if built is None:
            self.init_failure = "too few points left after the two-view bundle adjustment"
            return not_yet
        T2, xyz, i1, i2 = built
        self._create_initial_map(ref, frame, T2, xyz, i1, i2)
        return TrackResult(frame.id, frame.timestamp, TrackingState.OK, frame.T_cw.copy(), len(i2),
                           self.reference_kf, frame.point_ids >= 0)

    def _set_init_reference(self, frame: Frame) -> None:
        self._init_ref = frame
        self._init_prev_uv = frame.keypoints.astype(np.float64).copy()

    def _refine_two_view(self, ref: Frame, frame: Frame, i1: np.ndarray, i2: np.ndarray, view):
        """Bundle-adjust the two views (first fixed), drop outliers, scale the median depth to 1."""
        T2 = np.eye(4)
        T2[:3, :3], T2[:3, 3] = view.R, view.t
        xyz = view.xyz[view.good]
        n = len(xyz)
        poses = np.stack([np.eye(4), T2])
        pts = np.arange(n)
        uv = np.concatenate([ref.keypoints[i1], frame.keypoints[i2]]).astype(np.float64)
        inv_sigma2 = np.concatenate([ref.inv_sigma2[i1], frame.inv_sigma2[i2]])
        result = local_bundle_adjustment(poses, np.array([True, False]), xyz, np.repeat([0, 1], n),
                                         np.concatenate([pts, pts]), uv, np.full(2 * n, -1.0), inv_sigma2,
                                         frame.camera, iterations=20)
        keep = ~(result.outlier[:n] | result.outlier[n:])
        xyz, i1, i2 = result.points_w[keep], i1[keep], i2[keep]
        T2 = result.poses_cw[1]
        depth = xyz[:, 2]
        median = float(np.median(depth)) if len(depth) else -1.0
        if median <= 0 or len(xyz) < 2 * self.init_settings.min_points:
            return None
        T2[:3, 3] /= median
        return T2, xyz / median, i1, i2

    def _create_initial_map(self, ref: Frame, frame: Frame, T2: np.ndarray, xyz: np.ndarray,
                            i1: np.ndarray, i2: np.ndarray) -> None:
        ref.T_cw, frame.T_cw = np.eye(4), _orthonormalized(T2)
        with self.map.lock:
            kf0 = self.map.add_keyframe(_keyframe_of(ref), ref.T_cw.copy())
            kf1 = self.map.add_keyframe(_keyframe_of(frame), frame.T_cw.copy())
            ids = self.map.add_points(xyz, ref.descriptors[i1], kf0, i1,
                                      None if ref.colors is None else ref.colors[i1])
            self.map.add_observations(np.full(len(ids), kf1), i2, ids)
            self.map.update_point_geometry(ids)
            self.map.update_point_descriptors(ids)
            self.map.refresh_connections([kf0, kf1])
        ref.point_ids[i1] = ids
        frame.point_ids[:] = -1
        frame.point_ids[i2] = ids
        self.records.append(PoseRecord(ref.timestamp, kf0, np.eye(4),
                                       FrameObservations.of(ref) if self.keep_observations else None))
        self.reference_kf = kf1
        self.last_kf_frame = self.initialized_frame = frame.id
        self.last_kf_time = frame.timestamp
        self.state = TrackingState.OK
        self._record(frame)
        self.last, self.last_matches = frame, _Matches.empty(len(frame))
        self.last_matches.has[i2] = True
        self.last_matches.xyz[i2] = xyz
        self._init_ref = self._init_prev_uv = None
        self.sink.submit(kf0)
        self.sink.submit(kf1)

    # ---- step 1: against the last frame ---------------------------------------------------------------
    def _track_motion_model(self, frame: Frame, matches: _Matches) -> bool:
        frame.T_cw = self.velocity @ self.last.T_cw
        xyz, desc, octave, ids, angle = self._last_frame_points()
        grid = frame.grid()
        th = self.cfg.projection_radius_px * (2.0 if self.mode == "mono" else 1.0) * self.motion_window_scale
        for widen in (1.0, 2.0):
            frame.point_ids[:] = -1
            matches.has[:] = False
            n = self._match_projected(frame, matches, grid, xyz, desc, octave, ids, th * widen, angle)
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
        return xyz, last.descriptors[kp_idx], last.octave[kp_idx], ids, last.features.angle[kp_idx]

    def _temporary_points(self, last: Frame) -> np.ndarray:
        """Visual-odometry points, as ORB-SLAM's UpdateLastFrame: close depths with no map point yet."""
        free = np.flatnonzero((last.depth > 0) & (last.point_ids < 0))
        free = free[np.argsort(last.depth[free], kind="stable")]
        close = last.depth[free] <= self.depth_threshold
        count = max(int(close.sum()), 100)
        return free[:count]

    def _match_projected(self, frame: Frame, matches: _Matches, grid: KeypointGrid, xyz: np.ndarray,
                         desc: np.ndarray, octave: np.ndarray, ids: np.ndarray, th: float,
                         angle: np.ndarray) -> int:
        uv, z = _project(frame, xyz)
        ok = (z > 0) & frame.camera.in_image(uv)
        sel = np.flatnonzero(ok)
        radius = th * self.scales[octave[sel]]
        taken = matches.has.copy()
        pt, kp = search_by_projection(uv[sel], radius, octave[sel], desc[sel], frame.keypoints, frame.octave,
                                      frame.descriptors, grid, taken, self.th_high, ratio=1.0, octave_tol=1)
        # As ORB-SLAM's frame-to-frame search: keypoint orientations must turn together (learned features
        # carry no orientation: their angles are all 0 and pass).
        keep = rotation_consistent(angle[sel[pt]], frame.features.angle[kp])
        pt, kp = pt[keep], kp[keep]
        src = sel[pt]
        matches.has[kp] = True
        matches.xyz[kp] = xyz[src]
        frame.point_ids[kp] = ids[src]
        return len(kp)

    # ---- fallback: against the reference keyframe, by descriptors and PnP RANSAC ------------------------
    def _track_reference_keyframe(self, frame: Frame, matches: _Matches) -> bool:
        if self.reference_kf < 0:
            return False
        return self._track_keyframe(frame, matches, self.reference_kf)

    def _track_keyframe(self, frame: Frame, matches: _Matches, kf_id: int) -> bool:
        """Pose by descriptor matching against the points around a keyframe, then PnP (MAGSAC++)."""
        local = LocalMap.gather(self.map, np.zeros(0, np.int64), kf_id, max_keyframes=10)
        if len(local.point_ids) < 10 or len(frame) < 10:
            return False
        kp_idx, pt_idx = match_descriptors(frame.descriptors, local.descriptors, self.th_high)
        found = pnp_ransac(local.xyz[pt_idx], frame.keypoints[kp_idx], frame.camera.K, self.cfg.ransac_threshold_px)
        if found is None:
            return False
        frame.T_cw, inl = found
        frame.point_ids[:] = -1
        frame.point_ids[kp_idx[inl]] = local.point_ids[pt_idx[inl]]
        matches.has[:] = False
        matches.has[kp_idx[inl]] = True
        matches.xyz[kp_idx[inl]] = local.xyz[pt_idx[inl]]
        return self._optimize(frame, matches) >= 10

    def _relocalize(self, frame: Frame, matches: _Matches) -> bool:
        """Lost: try the keyframes place recognition proposes (the last reference keyframe without it)."""
        candidates = [self.reference_kf] if self.reference_kf >= 0 else []
        if self.places is not None:
            candidates = self.places.candidates(frame.descriptors, max_results=5) + candidates
        for kf_id in dict.fromkeys(candidates):
            with self.map.lock:
                alive = self.map.keyframes[kf_id].alive
            if alive and self._track_keyframe(frame, matches, kf_id):
                self.reference_kf = kf_id
                return True
            matches.has[:] = False
        return False

    # ---- step 2: against the local map ----------------------------------------------------------------
    def _track_local_map(self, frame: Frame, matches: _Matches) -> int:
        matched = frame.point_ids[frame.point_ids >= 0]
        local = LocalMap.gather(self.map, matched, self.reference_kf)
        uv, z = _project(frame, local.xyz)
        center = frame.center
        ray = local.xyz - center
        dist = np.linalg.norm(ray, axis=1)
        cos = np.einsum("ij,ij->i", ray, local.normals) / np.maximum(dist, 1e-12)
        visible = ((z > 0) & frame.camera.in_image(uv) & (dist >= 0.8 * local.min_dist)
                   & (dist <= 1.2 * local.max_dist) & (cos >= 0.5))
        size = 1 + int(max(local.point_ids.max(initial=-1), matched.max(initial=-1)))
        already = id_mask(matched, size)[local.point_ids]
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
                                      self.th_high, ratio=0.8, octave_tol=1)
        src = candidates[pt]
        frame.point_ids[kp] = local.point_ids[src]
        matches.has[kp] = True
        matches.xyz[kp] = local.xyz[src]
        self._optimize(frame, matches)
        # Temporary (visual odometry) points have served the pose; only map points stay matched.
        frame.point_ids[~matches.has] = -1
        found = frame.point_ids[frame.point_ids >= 0]
        with self.map.lock:
            self.map.count_tracked(local.point_ids[visible], found)
            self.reference_kf = self._most_shared_keyframe(found, self.reference_kf)
        return int(np.count_nonzero(frame.point_ids >= 0))

    def _most_shared_keyframe(self, point_ids: np.ndarray, fallback: int) -> int:
        """The keyframe observing most of the frame's matched points (as ORB-SLAM's reference keyframe), the
        newest among equals; the frame's pose is recorded relative to it, so it follows that keyframe's BA
        corrections. (Votes by each point's first keyframe picked the initial keyframe for most monocular frames
        until frame 90 of TUM fr3 teddy: composed with it, their online error was 20-80 mm; online ATE 16.4 mm.)
        Call with the map lock held."""
        counts = self.map.observer_counts(point_ids)
        if not counts.any():
            return fallback
        best = np.flatnonzero(counts == counts.max())
        return int(best[-1])

    def _optimize(self, frame: Frame, matches: _Matches) -> int:
        idx = np.flatnonzero(matches.has)
        if len(idx) < 6:
            return 0
        result = optimize_pose(frame.T_cw, matches.xyz[idx], frame.keypoints[idx].astype(np.float64),
                               frame.u_right[idx], frame.inv_sigma2[idx], frame.camera)
        frame.T_cw = _orthonormalized(result.T_cw)
        frame.outlier[idx] = ~result.inliers  # the viewer shows the matches the last optimisation rejected
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
        if self.localize_only or not self._need_keyframe(frame, n_inliers):
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
        waited = frame.timestamp - self.last_kf_time >= cfg.keyframe_busy_s
        c1b = since >= cfg.keyframe_min_frames and (idle or (waited and self.sink.queued() == 0))
        c1c = self.mode != "mono" and (n_inliers < 0.25 * ref_matches or need_close)
        c2 = (n_inliers < ratio * ref_matches or need_close) and n_inliers > 15
        if not ((c1a or c1b or c1c) and c2):
            return False
        if idle:
            return True
        self.sink.interrupt()
        # Monocular tracking lives on freshly triangulated points: it cannot wait for an idle mapper on two
        # cores, but it queues at most one keyframe (ORB-SLAM refuses all while mapping is busy).
        return self.sink.queued() < (1 if self.mode == "mono" else 3)

    def _create_keyframe(self, frame: Frame, new_points: np.ndarray) -> int:
        kf = _keyframe_of(frame)
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
        self.last_kf_time = frame.timestamp
        self.sink.submit(kf_id)
        return kf_id

    def _record(self, frame: Frame) -> None:
        with self.map.lock:
            T_ref_w = self.map.keyframe_pose(self.reference_kf)
        obs = FrameObservations.of(frame) if self.keep_observations else None
        self.records.append(PoseRecord(frame.timestamp, self.reference_kf, frame.T_cw @ se3_inverse(T_ref_w), obs))


def _keyframe_of(frame: Frame) -> KeyFrame:
    return KeyFrame(-1, frame.id, frame.timestamp, frame.keypoints, frame.octave, frame.descriptors, frame.u_right,
                    frame.depth, frame.inv_sigma2, np.full(len(frame), -1, dtype=np.int64), colors=frame.colors)


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
