"""Local mapping: turns each new keyframe into map (ORB-SLAM's LocalMapping steps).

process(keyframe): refresh its points -> cull recent points that are rarely found -> triangulate new
points with covisible keyframes -> fuse duplicates with neighbours -> local bundle adjustment (aborted
when tracking brings a new keyframe) -> cull redundant keyframes. Runs in its own thread via run().
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from slam.bundle_adjustment import adjust_window
from slam.camera import Camera
from slam.config import Config
from slam.geometry import CHI2_MONO, CHI2_STEREO, se3_inverse, triangulate_linear
from slam.map import Map, id_mask
from slam.matching import KeypointGrid, match_epipolar, search_by_projection


@dataclass
class MappingStats:
    keyframes: int = 0
    points_created: int = 0
    points_fused: int = 0
    keyframes_culled: int = 0
    ba_ms: list[float] = field(default_factory=list)


@dataclass
class _KeyframeView:
    """What triangulation and fusion need of a keyframe, copied out of the map."""

    id: int
    T_cw: np.ndarray
    keypoints: np.ndarray
    octave: np.ndarray
    descriptors: np.ndarray
    u_right: np.ndarray
    depth: np.ndarray
    point_ids: np.ndarray
    colors: np.ndarray | None

    @property
    def center(self) -> np.ndarray:
        return -self.T_cw[:3, :3].T @ self.T_cw[:3, 3]


class LocalMapper:
    def __init__(self, config: Config, slam_map: Map, camera: Camera, scales: np.ndarray):
        self.cfg = config.mapping
        self.mode = config.mode
        self.map = slam_map
        self.camera = camera
        self.scales = scales
        self.level_sigma2 = scales**2
        self.log_scale = np.log(scales[1]) if len(scales) > 1 else np.log(1.2)  # 1 level: every octave is 0
        self.th_low = slam_map.match_thresholds.low  # Hamming (ORB) or L2 (learned descriptors)
        self.depth_threshold = camera.baseline * config.camera.depth_threshold
        self.queue: queue.Queue = queue.Queue()
        self.abort_ba = threading.Event()
        self._busy = threading.Event()
        self.recent: list[tuple[int, np.ndarray]] = []  # (keyframe that created them, point ids)
        self.stats = MappingStats()
        self._working = threading.Lock()
        self.on_keyframe_done = None  # called with each processed keyframe id (loop closing's queue)

    # ---- the sink tracking talks to --------------------------------------------------------------------
    def idle(self) -> bool:
        return not self._busy.is_set() and self.queue.empty()

    def queued(self) -> int:
        return self.queue.qsize()

    def interrupt(self) -> None:
        self.abort_ba.set()

    def submit(self, kf_id: int) -> None:
        self._busy.set()
        self.queue.put(kf_id)

    def run(self, stop: threading.Event) -> None:
        """Process keyframes until `None` arrives on the queue or `stop` is set."""
        while not stop.is_set():
            kf_id = self.queue.get()
            if kf_id is None:
                self._busy.clear()
                return
            self._busy.set()
            try:
                self._process_and_pass_on(kf_id)
            finally:
                if self.queue.empty():
                    self._busy.clear()

    def drain(self) -> None:
        """Process every queued keyframe now (synchronous use: tests, and the end of a run)."""
        while True:
            try:
                kf_id = self.queue.get_nowait()
            except queue.Empty:
                break
            if kf_id is not None:
                self._process_and_pass_on(kf_id)
        self._busy.clear()

    def _process_and_pass_on(self, kf_id: int) -> None:
        with self._working:  # paused() holds this between keyframes
            self.process(kf_id)
        if self.on_keyframe_done is not None:
            self.on_keyframe_done(kf_id)

    # ---- what loop closing needs ---------------------------------------------------------------------------
    @contextmanager
    def paused(self) -> Iterator[None]:
        """Mapping stopped between keyframes while the block runs: the keyframe in progress finishes first
        (its bundle adjustment cut short)."""
        self.abort_ba.set()
        with self._working:
            yield

    def fuse_points(self, pt_ids: np.ndarray, kf_id: int) -> None:
        self._fuse(pt_ids, kf_id)

    def discard(self) -> None:
        """Drop queued keyframes unprocessed (mapping disabled: pure visual odometry)."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self._busy.clear()

    # ---- one keyframe -----------------------------------------------------------------------------------
    def process(self, kf_id: int) -> None:
        self.abort_ba.clear()
        self.stats.keyframes += 1
        with self.map.lock:
            if not self.map.keyframes[kf_id].alive:
                return
            ids = self.map.keyframes[kf_id].point_ids
            ids = ids[ids >= 0]
            self.map.update_point_geometry(ids)
            self.map.update_point_descriptors(ids)
            fresh = ids[self.map.points.first_kf[ids] == kf_id]
        self.recent.append((kf_id, fresh))
        self._cull_recent_points(kf_id)
        self._create_new_points(kf_id)
        if self.queue.empty():
            with self.map.lock:
                self.map.refresh_connections([kf_id])  # fusion picks its targets from these
            self._fuse_with_neighbours(kf_id)
        self._refresh_connections(kf_id)
        if self.queue.empty() and not self.abort_ba.is_set():
            self._local_bundle_adjustment(kf_id)
            self._cull_keyframes(kf_id)
        self._slide_window()

    def _refresh_connections(self, kf_id: int) -> None:
        """Covisibility of the keyframe and its neighbours changed: recompute it (ORB-SLAM's UpdateConnections)."""
        with self.map.lock:
            self.map.refresh_connections([kf_id])
            neighbours, _ = self.map.covisible(kf_id)
        for k in neighbours.tolist():  # one at a time: tracking may take the lock in between
            with self.map.lock:
                self.map.refresh_connections([k])

    # ---- point culling ---------------------------------------------------------------------------------
    def _cull_recent_points(self, kf_id: int) -> None:
        min_obs = 2 if self.mode == "mono" else 3
        keep = []
        with self.map.lock:
            p = self.map.points
            for created, ids in self.recent:
                ids = ids[p.alive[ids]]
                ratio = p.found[ids] / np.maximum(p.visible[ids], 1)
                bad = ratio < 0.25
                if kf_id - created >= 2:
                    bad |= p.n_obs[ids] <= min_obs
                self.map.cull_points(ids[bad])
                if kf_id - created < 3:
                    keep.append((created, ids[~bad]))
        self.recent = keep

    # ---- triangulation ---------------------------------------------------------------------------------
    def _view(self, kf_id: int) -> _KeyframeView:
        kf = self.map.keyframes[kf_id]
        return _KeyframeView(kf_id, self.map.kf_poses[kf_id].copy(), kf.keypoints, kf.octave, kf.descriptors,
                             kf.u_right, kf.depth, kf.point_ids.copy(), kf.colors)

    def _neighbours(self, kf_id: int, count: int) -> list[int]:
        ids, _ = self.map.covisible(kf_id)
        return [int(k) for k in ids if self.map.keyframes[int(k)].alive][:count]

    def _create_new_points(self, kf_id: int) -> None:
        count = 20 if self.mode == "mono" else self.cfg.covisible_keyframes
        with self.map.lock:
            current = self._view(kf_id)
            neighbours = [self._view(k) for k in self._neighbours(kf_id, count)]
        created = []
        for other in neighbours:
            if self.abort_ba.is_set() and created:
                break
            new = self._triangulate_pair(current, other)
            if new is None:
                continue
            i1, i2, xyz = new
            with self.map.lock:
                live = self.map.keyframes[kf_id].point_ids
                still_free = (live[i1] < 0) & (self.map.keyframes[other.id].point_ids[i2] < 0)
                i1, i2, xyz = i1[still_free], i2[still_free], xyz[still_free]
                colors = None if current.colors is None else current.colors[i1]
                ids = self.map.add_points(xyz, current.descriptors[i1], kf_id, i1, colors)
                self.map.add_observations(np.full(len(ids), other.id), i2, ids)
                self.map.update_point_geometry(ids)
            current.point_ids[i1] = ids
            created.append(ids)
        if created:
            ids = np.concatenate(created)
            self.recent.append((kf_id, ids))
            self.stats.points_created += len(ids)

    def _triangulate_pair(self, a: _KeyframeView, b: _KeyframeView):
        baseline = np.linalg.norm(a.center - b.center)
        if self.mode == "mono":
            depth_b = self._median_depth(b)
            if depth_b <= 0 or baseline / depth_b < 0.01:
                return None
        elif baseline < self.camera.baseline:
            return None
        F = _fundamental(a.T_cw, b.T_cw, self.camera.K)
        i1, i2 = match_epipolar(a.descriptors, b.descriptors, a.keypoints, b.keypoints, b.octave,
                                a.point_ids < 0, b.point_ids < 0, F, self.level_sigma2, self.th_low, ratio=1.0)
        if len(i1) == 0:
            return None
        xyz, ok = self._triangulate_checked(a, b, i1, i2)
        return i1[ok], i2[ok], xyz[ok]

    def _median_depth(self, v: _KeyframeView) -> float:
        ids = v.point_ids[v.point_ids >= 0]
        with self.map.lock:
            xyz = self.map.points.xyz[ids]
        if len(xyz) == 0:
            return -1.0
        z = xyz @ v.T_cw[2, :3] + v.T_cw[2, 3]
        return float(np.median(z))

    def _triangulate_checked(self, a: _KeyframeView, b: _KeyframeView, i1: np.ndarray, i2: np.ndarray):
        cam = self.camera
        xn1 = _normalized(cam, a.keypoints[i1])
        xn2 = _normalized(cam, b.keypoints[i2])
        R1w, R2w = a.T_cw[:3, :3].T, b.T_cw[:3, :3].T
        ray1 = _hom(xn1) @ R1w.T
        ray2 = _hom(xn2) @ R2w.T
        cos_rays = np.einsum("ij,ij->i", ray1, ray2) / (np.linalg.norm(ray1, axis=1) * np.linalg.norm(ray2, axis=1))
        d1, d2 = a.depth[i1], b.depth[i2]
        stereo1, stereo2 = d1 > 0, d2 > 0
        cos_st1 = np.where(stereo1, np.cos(2 * np.arctan2(cam.baseline / 2, np.where(stereo1, d1, 1.0))), 2.0)
        cos_st2 = np.where(stereo2, np.cos(2 * np.arctan2(cam.baseline / 2, np.where(stereo2, d2, 1.0))), 2.0)
        cos_st = np.minimum(cos_st1, cos_st2)
        use_tri = (cos_rays < cos_st) & (cos_rays > 0) & (stereo1 | stereo2 | (cos_rays < 0.9998))
        use_1 = ~use_tri & stereo1 & (cos_st1 < cos_st2)
        use_2 = ~use_tri & ~use_1 & stereo2 & (cos_st2 < cos_st1)
        xyz = np.zeros((len(i1), 3))
        if np.any(use_tri):
            xyz[use_tri] = triangulate_linear(a.T_cw, b.T_cw, xn1[use_tri], xn2[use_tri])
        if np.any(use_1):
            xyz[use_1] = _to_world(a.T_cw, cam.unproject(a.keypoints[i1[use_1]].astype(float), d1[use_1]))
        if np.any(use_2):
            xyz[use_2] = _to_world(b.T_cw, cam.unproject(b.keypoints[i2[use_2]].astype(float), d2[use_2]))
        ok = use_tri | use_1 | use_2
        ok &= np.all(np.isfinite(xyz), axis=1)
        ok &= self._reprojects(a, i1, xyz) & self._reprojects(b, i2, xyz)
        dist1 = np.linalg.norm(xyz - a.center, axis=1)
        dist2 = np.linalg.norm(xyz - b.center, axis=1)
        ok &= (dist1 > 0) & (dist2 > 0)
        ratio_dist = dist2 / np.maximum(dist1, 1e-12)
        ratio_octave = self.scales[a.octave[i1]] / self.scales[b.octave[i2]]
        factor = 1.5 * self.scales[1] if len(self.scales) > 1 else 1.8
        ok &= ~((ratio_dist * factor < ratio_octave) | (ratio_dist > ratio_octave * factor))
        return xyz, ok

    def _reprojects(self, v: _KeyframeView, idx: np.ndarray, xyz: np.ndarray) -> np.ndarray:
        """Positive depth and a reprojection error within the chi-square bound of the keypoint's scale."""
        cam = self.camera
        uv, z = cam.project_world(v.T_cw, xyz)
        u, w = uv[:, 0], uv[:, 1]
        safe = np.where(z > 1e-9, z, 1.0)
        sigma2 = self.level_sigma2[v.octave[idx]]
        err2 = (u - v.keypoints[idx, 0]) ** 2 + (w - v.keypoints[idx, 1]) ** 2
        ur = v.u_right[idx]
        stereo = ur >= 0
        err2_st = err2 + (u - cam.bf / safe - ur) ** 2
        chi2 = np.where(stereo, err2_st, err2) / sigma2
        return (z > 0) & (chi2 < np.where(stereo, CHI2_STEREO, CHI2_MONO))

    # ---- fusion of duplicates -------------------------------------------------------------------------
    def _fuse_with_neighbours(self, kf_id: int) -> None:
        with self.map.lock:
            first = self._neighbours(kf_id, 20 if self.mode == "mono" else 10)
            targets = dict.fromkeys(first)
            for k in first:
                for n in self._neighbours(k, 5):
                    if n != kf_id:
                        targets.setdefault(n)
        for target in targets:
            with self.map.lock:
                ids = self.map.keyframes[kf_id].point_ids
            self._fuse(ids[ids >= 0], target)
        with self.map.lock:
            pool = [self.map.keyframes[t].point_ids for t in targets]
        if pool:
            ids = np.unique(np.concatenate(pool))
            self._fuse(ids[ids >= 0], kf_id)
        with self.map.lock:
            ids = self.map.keyframes[kf_id].point_ids
            ids = ids[ids >= 0]
            self.map.update_point_geometry(ids)
            self.map.update_point_descriptors(ids)

    def _fuse(self, pt_ids: np.ndarray, kf_id: int) -> None:
        """Project points into a keyframe; merge with the point its matching keypoint has, or add the observation."""
        with self.map.lock:
            if not self.map.keyframes[kf_id].alive:
                return
            view = self._view(kf_id)
            pt_ids = pt_ids[self.map.points.alive[pt_ids] & ~id_mask(view.point_ids, self.map.points.size)[pt_ids]]
            p = self.map.points
            xyz, desc, normal = p.xyz[pt_ids].copy(), p.descriptor[pt_ids].copy(), p.normal[pt_ids].copy()
            dmin, dmax = p.min_dist[pt_ids].copy(), p.max_dist[pt_ids].copy()
        if len(pt_ids) == 0:
            return
        cam = self.camera
        uv, z = cam.project_world(view.T_cw, xyz)
        ray = xyz - view.center
        dist = np.linalg.norm(ray, axis=1)
        cos = np.einsum("ij,ij->i", ray, normal) / np.maximum(dist, 1e-12)
        ok = (z > 0) & cam.in_image(uv) & (dist >= 0.8 * dmin) & (dist <= 1.2 * dmax) & (cos >= 0.5)
        sel = np.flatnonzero(ok)
        if len(sel) == 0:
            return
        pred = np.clip(np.ceil(np.log(dmax[sel] / np.maximum(dist[sel], 1e-9)) / self.log_scale),
                       0, len(self.scales) - 1).astype(np.int64)
        grid = KeypointGrid.build(view.keypoints, cam.width, cam.height)
        pt, kp = search_by_projection(uv[sel], 3.0 * self.scales[pred], pred, desc[sel], view.keypoints,
                                      view.octave, view.descriptors, grid, np.zeros(len(view.keypoints), bool),
                                      self.th_low, ratio=1.0, octave_tol=1)
        src = sel[pt]
        err_ok = self._reprojects(view, kp, xyz[src])
        src, kp = src[err_ok], kp[err_ok]
        with self.map.lock:
            fused = self.map.fuse_matches(kf_id, pt_ids[src], kp)
        self.stats.points_fused += fused

    # ---- bundle adjustment --------------------------------------------------------------------------------
    def _local_bundle_adjustment(self, kf_id: int) -> None:
        start = time.perf_counter()
        with self.map.lock:
            window = [kf_id, *self._neighbours(kf_id, self.cfg.local_ba_window - 1)]
        if adjust_window(self.map, self.camera, window, self.cfg.local_ba_fixed, self.cfg.local_ba_iterations,
                         self.abort_ba):
            self.stats.ba_ms.append((time.perf_counter() - start) * 1000.0)

    # ---- keyframe culling ------------------------------------------------------------------------------
    def _slide_window(self) -> None:
        """Visual odometry (mapping.max_keyframes > 0): cull the oldest keyframes beyond the window, and with
        them the points only they saw, so memory stays bounded however long the run."""
        if self.cfg.max_keyframes <= 0:
            return
        with self.map.lock:
            alive = self.map.alive_keyframe_ids()
            excess = len(alive) - self.cfg.max_keyframes
            for k in alive[: max(excess, 0)].tolist():
                self.map.cull_keyframe(k, int(alive[excess]), release=True)  # placed via the oldest kept one
                self.stats.keyframes_culled += 1

    def _cull_keyframes(self, kf_id: int) -> None:
        """Cull neighbours of the new keyframe whose points are nearly all seen well elsewhere."""
        with self.map.lock:
            for k in self._neighbours(kf_id, self.cfg.local_ba_window * 2):
                if k == 0 or k == kf_id or not self.map.keyframes[k].alive:
                    continue
                if self._redundant(k):
                    parents = [n for n in self._neighbours(k, 5) if n != k]
                    if not parents:
                        continue
                    self.map.cull_keyframe(k, parents[0], release=self.cfg.max_keyframes > 0)
                    self.stats.keyframes_culled += 1

    def _redundant(self, k: int) -> bool:
        """90% of the keyframe's points seen by at least 3 other keyframes at the same or a finer scale."""
        kf = self.map.keyframes[k]
        idx = np.flatnonzero(kf.point_ids >= 0)
        if self.mode != "mono":
            idx = idx[(kf.depth[idx] > 0) & (kf.depth[idx] <= self.depth_threshold)]
        idx = idx[self.map.points.alive[kf.point_ids[idx]]]
        if len(idx) == 0:
            return False
        pts = kf.point_ids[idx]
        counts = self.map.seen_elsewhere(pts, k, kf.octave[idx] + 1)
        return int(np.count_nonzero(counts >= 3)) > self.cfg.cull_redundant_ratio * len(pts)


def _normalized(cam: Camera, uv: np.ndarray) -> np.ndarray:
    return np.stack([(uv[:, 0] - cam.cx) / cam.fx, (uv[:, 1] - cam.cy) / cam.fy], axis=1)


def _hom(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], axis=1)


def _to_world(T_cw: np.ndarray, Xc: np.ndarray) -> np.ndarray:
    T_wc = se3_inverse(T_cw)
    return Xc @ T_wc[:3, :3].T + T_wc[:3, 3]


def _fundamental(T1_cw: np.ndarray, T2_cw: np.ndarray, K: np.ndarray) -> np.ndarray:
    """F21 with x2' F21 x1 = 0 for pixels x1 in view 1 and x2 in view 2."""
    T21 = T2_cw @ se3_inverse(T1_cw)
    R, t = T21[:3, :3], T21[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    Kinv = np.linalg.inv(K)
    return Kinv.T @ tx @ R @ Kinv
