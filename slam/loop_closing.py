"""Loop closing (ORB-SLAM's LoopClosing), in its own thread, fed the keyframes local mapping finished.

detect: place-recognition candidates scoring at least as well as the keyframe's own covisible neighbours,
kept only when consistent over several consecutive keyframes -> verify: descriptor matches between the
keyframe's points and the candidate's neighbourhood, a RANSAC alignment (SE(3) with metric depth, Sim(3)
for monocular maps, finished on reprojections), more matches by projection and a pose refit -> correct:
mapping paused, the keyframe's neighbourhood moved onto the loop, duplicate points fused, then a pose graph
over all keyframes spreads the correction -> a global BA on a copy of the map, with mapping running.
Tracking keeps running; it re-places its last frame when the map's generation changes.
"""

from __future__ import annotations

import queue
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from slam.bundle_adjustment import adjust_whole_map
from slam.camera import Camera
from slam.config import Config
from slam.map import Map, MapUpdate, id_mask
from slam.optimizer import optimize_pose, pose_covariance
from slam.pose_graph import PoseGraphEdge, optimize_pose_graph, relative
from slam.relocalization import match_descriptors
from slam.similarity import ransac_alignment, refine_similarity, sim3_apply, sim3_inverse, sim3_scale

CHI2_ALIGN = 9.21  # ORB-SLAM's Sim3Solver bound (2 dof, 99%)
STRONG_COVISIBILITY = 100  # shared points that make a covisibility edge part of the pose graph
GROUP_SIZE = 10  # a keyframe's group: it and its best covisible keyframes, as ORB-SLAM's


class PlaceIndex(Protocol):
    def add(self, kf_id: int, descriptors: np.ndarray) -> None: ...

    def loop_candidates(self, descriptors: np.ndarray, min_score: float, exclude: set[int],
                        neighbours) -> list[int]: ...

    def score(self, a: int, b: int) -> float: ...


class MappingControl(Protocol):
    def paused(self) -> AbstractContextManager[None]: ...

    def fuse_points(self, pt_ids: np.ndarray, kf_id: int) -> None: ...


@dataclass
class Loop:
    keyframe: int
    loop_keyframe: int
    matches: int
    scale: float
    correction_ms: float
    global_ba_ms: float = 0.0  # 0 when none ran (switched off, or stopped by the end of the run)


@dataclass
class LoopStats:
    candidates: int = 0
    loops: list[Loop] = field(default_factory=list)


@dataclass
class _Candidate:
    group: set[int]  # the candidate and its covisible keyframes
    consistency: int


class LoopCloser:
    def __init__(self, config: Config, slam_map: Map, camera: Camera, places: PlaceIndex, mapping: MappingControl):
        self.cfg = config.loop_closing
        self.with_scale = config.mode == "mono"
        self.map = slam_map
        self.camera = camera
        self.places = places
        self.mapping = mapping
        self.queue: queue.Queue = queue.Queue()
        self.stats = LoopStats()
        self._groups: list[_Candidate] = []  # consistent candidate groups of the previous keyframe
        self._last_loop_kf = -(10**9)
        self._stop: threading.Event | None = None  # the run's stop event: ends a global BA early
        self._corrected: dict[int, np.ndarray] = {}  # the loop neighbourhood's corrected poses
        self._moved_by = np.zeros(0, np.int64)  # per point: the keyframe whose correction moved it, or -1

    # ---- feeding ----------------------------------------------------------------------------------------
    def submit(self, kf_id: int) -> None:
        self.queue.put(kf_id)

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.is_set():
            kf_id = self.queue.get()
            if kf_id is None:
                return
            self.process(kf_id)

    def drain(self) -> None:
        while True:
            try:
                kf_id = self.queue.get_nowait()
            except queue.Empty:
                return
            if kf_id is not None:
                self.process(kf_id)

    # ---- one keyframe -----------------------------------------------------------------------------------
    def process(self, kf_id: int) -> bool:
        with self.map.lock:
            kf = self.map.keyframes[kf_id]
            if not kf.alive:
                return False
            descriptors = kf.descriptors
            neighbours = [int(k) for k in self.map.covisible(kf_id)[0] if self.map.keyframes[int(k)].alive]
        candidates = self._detect(kf_id, descriptors, neighbours)
        self.places.add(kf_id, descriptors)
        for candidate in candidates:
            alignment = self._verify(kf_id, candidate)
            if alignment is not None:
                self._correct(kf_id, candidate, *alignment)
                self._global_bundle_adjustment()
                return True
        return False

    # ---- detection ----------------------------------------------------------------------------------------
    def _detect(self, kf_id: int, descriptors: np.ndarray, neighbours: list[int]) -> list[int]:
        if kf_id - self._last_loop_kf < self.cfg.min_keyframes_between or len(neighbours) == 0:
            self._groups = []
            return []
        min_score = min(self.places.score(kf_id, n) for n in neighbours[:10]) if neighbours else 0.0
        exclude = {kf_id, *neighbours}
        ids = self.places.loop_candidates(descriptors, min_score, exclude, self._neighbours_locked)
        raw = [k for k in ids if kf_id - k >= self.cfg.min_keyframes_between]
        self.stats.candidates += len(raw)
        return self._consistent(raw)

    def _neighbours(self, kf_id: int) -> list[int]:
        """The keyframe's best covisible keyframes (lock held)."""
        return [int(k) for k in self.map.covisible(kf_id)[0][:GROUP_SIZE]]

    def _neighbours_locked(self, kf_id: int) -> list[int]:
        with self.map.lock:
            return self._neighbours(kf_id)

    def _consistent(self, raw: list[int]) -> list[int]:
        """ORB-SLAM's consistency check: a candidate's covisible group must overlap groups found for the
        previous keyframes `min_consistency` times in a row."""
        groups, accepted = [], []
        for candidate in raw:
            with self.map.lock:
                group = {candidate, *self._neighbours(candidate)}
            consistency = 1 + max((g.consistency for g in self._groups if g.group & group), default=0)
            groups.append(_Candidate(group, consistency))
            if consistency >= self.cfg.min_consistency:
                accepted.append(candidate)
        self._groups = groups
        return accepted

    # ---- verification -------------------------------------------------------------------------------------
    def _verify(self, kf_id: int, loop_kf: int):
        """(S, keypoint indices, loop point ids) with S mapping the keyframe's (drifted) world onto the loop's."""
        with self.map.lock:
            kf = self.map.keyframes[kf_id]
            T_cw = self.map.kf_poses[kf_id].copy()
            kp = np.flatnonzero(kf.point_ids >= 0)
            kp = kp[self.map.points.alive[kf.point_ids[kp]]]
            X_cur = self.map.points.xyz[kf.point_ids[kp]].copy()
            group = [loop_kf, *self._neighbours(loop_kf)]
            pts = np.concatenate([self.map.keyframes[k].point_ids for k in group if self.map.keyframes[k].alive])
            pts = np.unique(pts[pts >= 0])
            pts = pts[self.map.points.alive[pts] & ~id_mask(kf.point_ids, self.map.points.size)[pts]]
            X_loop = self.map.points.xyz[pts].copy()
            desc_loop = self.map.points.descriptor[pts].copy()
            descriptors, keypoints, inv_sigma2 = kf.descriptors, kf.keypoints, kf.inv_sigma2
            th = self.map.match_thresholds.low
        qi, ti = match_descriptors(descriptors[kp], desc_loop, th)
        if len(qi) < self.cfg.min_matches // 2:
            return None  # most candidates end here (the 1000-frame synthetic orbit: 2 matches at the median)
        with self.map.lock:
            # Where the loop's keyframes saw the matched points (the lock released in between: points mapping
            # culled meanwhile are left out).
            alive = self.map.points.alive[pts[ti]]
            qi, ti = qi[alive], ti[alive]
            obs_pose, obs_uv, obs_sigma2 = self._one_observation(pts[ti])
        if len(qi) < self.cfg.min_matches // 2:
            return None
        uv = keypoints[kp[qi]].astype(np.float64)
        sigma2 = 1.0 / inv_sigma2[kp[qi]]

        def whitened_errors(S: np.ndarray):
            # Both ways, as ORB-SLAM's Sim3Solver: the loop's points brought into the drifted world reproject
            # onto the keyframe's keypoints, and the keyframe's points carried onto the loop reproject onto
            # where the loop's keyframes saw them. Errors in pixels over sigma; False where behind a camera.
            uv_hat, z = self.camera.project_world(T_cw, sim3_apply(sim3_inverse(S), X_loop[ti]))
            Xc = np.einsum("nij,nj->ni", obs_pose[:, :3, :3], sim3_apply(S, X_cur[qi])) + obs_pose[:, :3, 3]
            uv2 = self.camera.project(np.where(Xc[:, 2:3] > 1e-9, Xc, 1.0))
            return ((uv_hat - uv) / np.sqrt(sigma2)[:, None], z > 0,
                    (uv2 - obs_uv) / np.sqrt(obs_sigma2)[:, None], Xc[:, 2] > 0)

        def agrees(S: np.ndarray) -> np.ndarray:
            e1, front1, e2, front2 = whitened_errors(S)
            return front1 & front2 & (np.sum(e1**2, axis=1) < CHI2_ALIGN) & (np.sum(e2**2, axis=1) < CHI2_ALIGN)

        found = ransac_alignment(X_cur[qi], X_loop[ti], agrees, self.with_scale,
                                 min_inliers=self.cfg.min_matches // 2)
        if found is None:
            return None
        S = found.S
        if self.with_scale:
            S = self._refine_on_reprojections(S, whitened_errors, found.inliers)
            if np.count_nonzero(agrees(S)) < self.cfg.min_matches // 2:
                return None
            # A scale jump this large is a local map that broke, not drift: the pose graph would spread it
            # over the whole loop (measured: 13 mm -> 170 mm on the synthetic loop).
            if abs(np.log(sim3_scale(S))) > np.log(self.cfg.max_scale_change):
                return None
        kp_more, idx = self._search_by_projection(T_cw, S, keypoints, descriptors, X_loop, desc_loop, th)
        if len(kp_more) >= self.cfg.min_matches:
            # Refine the corrected pose on every match (with depth where there is some), as tracking would;
            # a monocular loop keeps the alignment's scale, which one view cannot tell.
            S_c = T_cw @ sim3_inverse(S)
            s_c = sim3_scale(S_c)
            result = optimize_pose(_rigid(S_c), X_loop[idx], keypoints[kp_more].astype(np.float64),
                                   kf.u_right[kp_more], inv_sigma2[kp_more], self.camera)
            S_c = result.T_cw.copy()
            S_c[:3] *= s_c
            S = sim3_inverse(S_c) @ T_cw
            kp_more, idx = kp_more[result.inliers], idx[result.inliers]
            if not self.with_scale and not self._well_constrained(result.T_cw, X_loop[idx], inv_sigma2[kp_more],
                                                                  kf.u_right[kp_more]):
                return None
        if len(kp_more) < self.cfg.min_matches:
            return None
        return S, kp_more, pts[idx]

    def _refine_on_reprojections(self, S: np.ndarray, whitened_errors, inliers: np.ndarray) -> np.ndarray:
        """Monocular points have poor depths: the 3D fit is finished on the RANSAC inliers' reprojections."""

        def residuals(S_: np.ndarray) -> np.ndarray:
            e1, front1, e2, front2 = whitened_errors(S_)
            # Behind a camera: a large constant error, so such points pull no gradient but are not rewarded.
            e1 = np.where(front1[:, None], e1, 10.0)[inliers]
            e2 = np.where(front2[:, None], e2, 10.0)[inliers]
            return np.concatenate([e1.ravel(), e2.ravel()])

        return refine_similarity(S, residuals, self.with_scale)

    def _well_constrained(self, T_cw, X, inv_sigma2, u_right) -> bool:
        """Matches bunched in a strip of the image trade rotation for translation: such a loop would move
        the map by a guess, so it waits for a keyframe that sees more of the place."""
        if len(X) < 6:
            return False
        cov = pose_covariance(T_cw, X, inv_sigma2, u_right, self.camera)
        rot_std = np.degrees(np.sqrt(max(np.linalg.eigvalsh(cov[:3, :3]).max(), 0.0)))
        trans_std = np.sqrt(max(np.linalg.eigvalsh(cov[3:, 3:]).max(), 0.0))
        return rot_std <= self.cfg.max_rotation_std_deg and trans_std <= self.cfg.max_translation_std_m

    def _one_observation(self, pts: np.ndarray):
        """For each point, one keyframe that saw it (lock held): its pose, the pixel, the pixel's sigma^2."""
        obs_kf, obs_kp, obs_pt = self.map.observations_of_points(pts)
        _, first = np.unique(obs_pt, return_index=True)
        order = np.searchsorted(obs_pt[first], pts)
        kf_ids, kp = obs_kf[first][order], obs_kp[first][order]
        poses = self.map.kf_poses[kf_ids]
        uv = np.empty((len(pts), 2))
        sigma2 = np.empty(len(pts))
        for k in np.unique(kf_ids).tolist():
            sel = kf_ids == k
            uv[sel] = self.map.keyframes[k].keypoints[kp[sel]]
            sigma2[sel] = 1.0 / self.map.keyframes[k].inv_sigma2[kp[sel]]
        return poses, uv, sigma2

    def _search_by_projection(self, T_cw, S, keypoints, descriptors, X_loop, desc_loop, th):
        """Loop points projected into the corrected keyframe, matched to the nearest similar keypoint:
        (keypoint indices, indices into the loop points)."""
        from slam.matching import KeypointGrid, search_by_projection

        uv, z = self.camera.project_world(T_cw, sim3_apply(sim3_inverse(S), X_loop))
        sel = np.flatnonzero((z > 0) & self.camera.in_image(uv))
        if len(sel) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        grid = KeypointGrid.build(keypoints, self.camera.width, self.camera.height)
        octave = np.zeros(len(sel), np.int64)
        pi, ki = search_by_projection(uv[sel], np.full(len(sel), 10.0), octave, desc_loop[sel], keypoints,
                                      np.zeros(len(keypoints), np.int64), descriptors, grid,
                                      np.zeros(len(keypoints), bool), th, ratio=1.0, octave_tol=-1)
        return ki, sel[pi]

    # ---- correction -----------------------------------------------------------------------------------------
    def _correct(self, kf_id: int, loop_kf: int, S: np.ndarray, kp_idx: np.ndarray, loop_pts: np.ndarray) -> None:
        start = time.perf_counter()
        with self.mapping.paused():
            with self.map.lock:
                before = self._poses_as_similarities()
                group = self._move_onto_loop(kf_id, S, before)
                self._fuse_matches(kf_id, kp_idx, loop_pts)
                self.map.refresh_connections(list(group))
            with self.map.lock:
                loop_group = [loop_kf, *self._neighbours(loop_kf)]
            for k in group:  # ORB-SLAM's SearchAndFuse: the loop's points into the corrected neighbourhood
                self.mapping.fuse_points(self._points_of(loop_group), k)
            self._optimize_essential_graph(kf_id, loop_kf, group, loop_group, before)
        ms = (time.perf_counter() - start) * 1000.0
        self.stats.loops.append(Loop(kf_id, loop_kf, len(kp_idx), sim3_scale(S), ms))
        self._last_loop_kf = kf_id
        self._groups = []

    def _global_bundle_adjustment(self) -> None:
        """The pose graph leaves points and poses only roughly consistent; a full BA settles them. It runs
        in this thread, so tracking and local mapping go on; loops found meanwhile wait in the queue."""
        if self.cfg.global_ba_iterations <= 0:
            return
        start = time.perf_counter()
        if adjust_whole_map(self.map, self.camera, self.mapping.paused, self.cfg.global_ba_iterations, self._stop):
            self.stats.loops[-1].global_ba_ms = (time.perf_counter() - start) * 1000.0

    def _poses_as_similarities(self) -> dict[int, np.ndarray]:
        return {int(k): self.map.kf_poses[k].copy() for k in self.map.alive_keyframe_ids()}

    def _move_onto_loop(self, kf_id: int, S: np.ndarray, before: dict[int, np.ndarray]) -> set[int]:
        """The keyframe and its covisible neighbours (lock held): poses S-corrected, their points carried along."""
        group = {kf_id, *(int(k) for k in self.map.covisible(kf_id)[0] if self.map.keyframes[int(k)].alive)}
        S_inv = sim3_inverse(S)
        corrected = {k: before[k] @ S_inv for k in group}
        p = self.map.points
        self._moved_by = np.full(p.size, -1, np.int64)
        for k in group:
            ids = self.map.keyframes[k].point_ids
            ids = ids[(ids >= 0)]
            self._moved_by[ids[p.alive[ids] & (self._moved_by[ids] < 0)]] = k
        moved = np.flatnonzero(self._moved_by >= 0)
        kf_ids = np.array(sorted(group), np.int64)
        poses = np.array([_rigid(corrected[k]) for k in kf_ids.tolist()]).reshape(-1, 4, 4)
        self.map.apply(MapUpdate(kf_ids, poses, moved, sim3_apply(S, p.xyz[moved]), moved=True))
        self._corrected = corrected
        return group

    def _fuse_matches(self, kf_id: int, kp_idx: np.ndarray, loop_pts: np.ndarray) -> None:
        """The keyframe's keypoints matched to loop points: the loop's point replaces the keyframe's (lock held)."""
        kf = self.map.keyframes[kf_id]
        add_kp, add_pt = [], []
        for k, pt in zip(kp_idx.tolist(), loop_pts.tolist()):
            if not self.map.points.alive[pt]:
                continue
            current = int(kf.point_ids[k])
            if current >= 0 and self.map.points.alive[current]:
                self.map.replace_point(current, pt)
            elif pt not in kf.point_ids:
                add_kp.append(k)
                add_pt.append(pt)
        if add_kp:
            self.map.add_observations(np.full(len(add_kp), kf_id), np.array(add_kp), np.array(add_pt))

    def _points_of(self, kf_ids: list[int]) -> np.ndarray:
        with self.map.lock:
            pts = np.concatenate([self.map.keyframes[k].point_ids for k in kf_ids])
            pts = np.unique(pts[pts >= 0])
            return pts[self.map.points.alive[pts]]

    def _optimize_essential_graph(self, kf_id: int, loop_kf: int, group: set[int], loop_group: list[int],
                                  before: dict[int, np.ndarray]) -> None:
        with self.map.lock:
            ids = [int(k) for k in self.map.alive_keyframe_ids()]
            index = {k: i for i, k in enumerate(ids)}
            # Initial estimates: corrected poses for the loop's neighbourhood, the old ones elsewhere.
            start = np.stack([self._corrected.get(k, before.get(k, self.map.kf_poses[k])) for k in ids])
            edges = self._graph_edges(ids, index, group, loop_group, before)
        fixed = np.zeros(len(ids), bool)
        fixed[index[loop_kf]] = True
        optimized = optimize_pose_graph(start, edges, fixed, self.with_scale)
        with self.map.lock:
            self._apply_graph(ids, start, optimized)

    def _graph_edges(self, ids, index, group, loop_group, before) -> list[PoseGraphEdge]:
        """Chain and strong covisibility edges measured before the correction; loop edges after it."""
        edges, seen = [], set()

        def add(a: int, b: int, S_a: np.ndarray, S_b: np.ndarray) -> None:
            key = (min(a, b), max(a, b))
            if a == b or key in seen or a not in index or b not in index:
                return
            seen.add(key)
            edges.append(PoseGraphEdge(index[a], index[b], relative(S_a, S_b)))

        def pose(k: int) -> np.ndarray:
            return before.get(k, self.map.kf_poses[k])

        for previous, k in zip(ids, ids[1:]):
            add(previous, k, pose(previous), pose(k))
        for k in ids:
            near, weights = self.map.covisible(k)
            for n, w in zip(near.tolist(), weights.tolist()):
                if w >= STRONG_COVISIBILITY and not ((k in group) ^ (n in group)):
                    add(k, n, pose(k), pose(n))
        for k in group:
            for n in loop_group:
                if n in index and n not in group:
                    add(k, n, self._corrected[k], pose(n))
        return edges

    def _apply_graph(self, ids: list[int], start: np.ndarray, optimized: np.ndarray) -> None:
        """New keyframe poses; each point follows its reference keyframe's correction (lock held)."""
        correction = {k: sim3_inverse(optimized[i]) @ start[i] for i, k in enumerate(ids)}
        p = self.map.points
        alive = self.map.alive_point_ids()
        # A point the loop correction already moved follows the keyframe that moved it, as ORB-SLAM's
        # mnCorrectedReference: its own reference keyframe may lie outside the corrected neighbourhood.
        # (Points made since the correction have no entry.)
        moved_by = np.full(len(alive), -1, np.int64)
        known = alive < len(self._moved_by)
        moved_by[known] = self._moved_by[alive[known]]
        refs = np.where(moved_by >= 0, moved_by, p.ref_kf[alive])
        pt_ids, xyz = [], []
        for k in np.unique(refs).tolist():
            if k in correction:
                sel = alive[refs == k]
                pt_ids.append(sel)
                xyz.append(sim3_apply(correction[k], p.xyz[sel]))
        poses = np.array([_rigid(S) for S in optimized]).reshape(-1, 4, 4)
        pt_ids = np.concatenate(pt_ids) if pt_ids else np.zeros(0, np.int64)
        xyz = np.concatenate(xyz) if xyz else np.zeros((0, 3))
        self.map.apply(MapUpdate(np.asarray(ids, np.int64), poses, pt_ids, xyz, moved=True), refresh=alive)


def _rigid(S: np.ndarray) -> np.ndarray:
    """A camera pose from a similarity world-to-camera transform: the scale divides the translation."""
    s = sim3_scale(S)
    T = np.eye(4)
    T[:3, :3] = S[:3, :3] / s
    T[:3, 3] = S[:3, 3] / s
    return T
