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
from numba import njit

from slam.bundle_adjustment import adjust_window
from slam.camera import Camera
from slam.config import Config
from slam.geometry import CHI2_MONO, CHI2_STEREO, se3_inverse
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
        """Points for matched keypoints of two keyframes, as ORB-SLAM's CreateNewMapPoints: by triangulation
        where the rays' parallax beats the stereo / depth parallax, else from the keyframe with the better
        depth; kept when in front of both cameras, reprojecting within the chi-square bound of the keypoint's
        scale in both, and at distances consistent with the two scales. Returns (xyz, ok)."""
        cam = self.camera
        factor = 1.5 * self.scales[1] if len(self.scales) > 1 else 1.8
        return _checked_points(a.T_cw, b.T_cw, _kernel_view(a), _kernel_view(b), i1, i2, _intrinsics(cam),
                               cam.baseline, self.level_sigma2, self.scales, factor)

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
        k = _intrinsics(cam)
        sel, uv, pred = _fusion_candidates(view.T_cw, xyz, normal, dmin, dmax, k, cam.width, cam.height,
                                           self.log_scale, len(self.scales))
        if len(sel) == 0:
            return
        grid = KeypointGrid.build(view.keypoints, cam.width, cam.height)
        pt, kp = search_by_projection(uv, 3.0 * self.scales[pred], pred, desc[sel], view.keypoints,
                                      view.octave, view.descriptors, grid, np.zeros(len(view.keypoints), bool),
                                      self.th_low, ratio=1.0, octave_tol=1)
        src = sel[pt]
        err_ok = _reprojections_ok(view.T_cw, xyz[src], view.keypoints[kp].astype(np.float64),
                                   view.u_right[kp].astype(np.float64), self.level_sigma2[view.octave[kp]], k)
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


def _intrinsics(cam: Camera) -> np.ndarray:
    return np.array([cam.fx, cam.fy, cam.cx, cam.cy, cam.bf])


def _kernel_view(v: _KeyframeView) -> tuple:
    """A keyframe's keypoints as the kernels below take them: (uv, octave, u_right, depth)."""
    return (np.ascontiguousarray(v.keypoints, np.float64), np.ascontiguousarray(v.octave, np.int64),
            np.ascontiguousarray(v.u_right, np.float64), np.ascontiguousarray(v.depth, np.float64))


# Triangulation's checks, one compiled call per keyframe pair (they were ~40 numpy calls on a few hundred
# matches each, with the GIL held: 41% of the mapping thread's GIL samples on the 1000-frame synthetic RGB-D run,
# py-spy), and the reprojection test fusion shares with it.
@njit(cache=True, nogil=True, inline="always")
def _centre(R, t):
    """The camera centre -R^T t of a pose (R, t)."""
    c = np.empty(3)
    for j in range(3):
        c[j] = -(R[0, j] * t[0] + R[1, j] * t[1] + R[2, j] * t[2])
    return c


@njit(cache=True, nogil=True, inline="always")
def _pixel(R, t, X, k):
    """World point X seen from (R, t) as Camera.project_world does: (u, v, depth z, the z divided by)."""
    z = R[2, 0] * X[0] + R[2, 1] * X[1] + R[2, 2] * X[2] + t[2]
    safe = z if z > 1e-9 else 1.0
    u = k[0] * (R[0, 0] * X[0] + R[0, 1] * X[1] + R[0, 2] * X[2] + t[0]) / safe + k[2]
    v = k[1] * (R[1, 0] * X[0] + R[1, 1] * X[1] + R[1, 2] * X[2] + t[1]) / safe + k[3]
    return u, v, z, safe


@njit(cache=True, nogil=True)
def _reprojection_ok(R, t, X, u_obs, v_obs, u_right, sigma2, k) -> bool:
    """Positive depth and a reprojection error within the chi-square bound of the keypoint's scale (u_right < 0:
    a monocular observation)."""
    u, v, z, safe = _pixel(R, t, X, k)
    if not z > 0.0:
        return False
    err2 = (u - u_obs) ** 2 + (v - v_obs) ** 2
    if u_right >= 0.0:
        return (err2 + (u - k[4] / safe - u_right) ** 2) / sigma2 < CHI2_STEREO
    return err2 / sigma2 < CHI2_MONO


@njit(cache=True, nogil=True)
def _reprojections_ok(T, xyz, uv, u_right, sigma2, k):
    R, t = T[:3, :3], T[:3, 3]
    ok = np.empty(xyz.shape[0], np.bool_)
    for i in range(xyz.shape[0]):
        ok[i] = _reprojection_ok(R, t, xyz[i], uv[i, 0], uv[i, 1], u_right[i], sigma2[i], k)
    return ok


@njit(cache=True, nogil=True)
def _fusion_candidates(T, xyz, normal, dmin, dmax, k, width, height, log_scale, n_levels):
    """Points that a keyframe could see (ORB-SLAM's Fuse checks: in front, inside the image, within the
    point's scale-invariance distances, viewing angle under 60 degrees): their indices, pixels and the octave
    their distance predicts."""
    R, t = T[:3, :3], T[:3, 3]
    c = _centre(R, t)
    n = xyz.shape[0]
    sel = np.empty(n, np.int64)
    uv = np.empty((n, 2))
    pred = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        X = xyz[i]
        u, v, z, _ = _pixel(R, t, X, k)
        if not z > 0.0:
            continue
        if not (u >= 0.0 and u < width and v >= 0.0 and v < height):
            continue
        rx, ry, rz = X[0] - c[0], X[1] - c[1], X[2] - c[2]
        dist = np.sqrt(rx * rx + ry * ry + rz * rz)
        cos = (rx * normal[i, 0] + ry * normal[i, 1] + rz * normal[i, 2]) / max(dist, 1e-12)
        if not (dist >= 0.8 * dmin[i] and dist <= 1.2 * dmax[i] and cos >= 0.5):
            continue
        level = np.ceil(np.log(dmax[i] / max(dist, 1e-9)) / log_scale)
        sel[m] = i
        uv[m, 0] = u
        uv[m, 1] = v
        pred[m] = int(min(max(level, 0.0), n_levels - 1.0))
        m += 1
    return sel[:m], uv[:m], pred[:m]


@njit(cache=True, nogil=True)
def _checked_points(T1, T2, view1, view2, i1, i2, k, baseline, level_sigma2, scales, factor):
    kp1, oct1, ur1, d1 = view1
    kp2, oct2, ur2, d2 = view2
    fx, fy, cx, cy = k[0], k[1], k[2], k[3]
    R1, t1, R2, t2 = T1[:3, :3], T1[:3, 3], T2[:3, :3], T2[:3, 3]
    c1, c2 = _centre(R1, t1), _centre(R2, t2)
    n = i1.shape[0]
    xyz = np.zeros((n, 3))
    ok = np.zeros(n, np.bool_)
    A = np.empty((4, 4))
    X = np.empty(3)
    for m in range(n):
        a, b = i1[m], i2[m]
        x1, y1 = (kp1[a, 0] - cx) / fx, (kp1[a, 1] - cy) / fy
        x2, y2 = (kp2[b, 0] - cx) / fx, (kp2[b, 1] - cy) / fy
        dot = nr1 = nr2 = 0.0
        for j in range(3):  # the rays in the world frame: R^T (x, y, 1)
            r1 = R1[0, j] * x1 + R1[1, j] * y1 + R1[2, j]
            r2 = R2[0, j] * x2 + R2[1, j] * y2 + R2[2, j]
            dot += r1 * r2
            nr1 += r1 * r1
            nr2 += r2 * r2
        cos_rays = dot / (np.sqrt(nr1) * np.sqrt(nr2))
        stereo1, stereo2 = d1[a] > 0.0, d2[b] > 0.0
        cos_st1 = np.cos(2.0 * np.arctan2(baseline / 2.0, d1[a])) if stereo1 else 2.0
        cos_st2 = np.cos(2.0 * np.arctan2(baseline / 2.0, d2[b])) if stereo2 else 2.0
        if cos_rays < min(cos_st1, cos_st2) and cos_rays > 0.0 and (stereo1 or stereo2 or cos_rays < 0.9998):
            for j in range(4):  # linear (DLT) triangulation: the null vector of A
                A[0, j] = x1 * T1[2, j] - T1[0, j]
                A[1, j] = y1 * T1[2, j] - T1[1, j]
                A[2, j] = x2 * T2[2, j] - T2[0, j]
                A[3, j] = y2 * T2[2, j] - T2[1, j]
            h = np.linalg.svd(A)[2][3]
            if abs(h[3]) < 1e-12:
                continue  # parallel rays: at infinity
            for j in range(3):
                X[j] = h[j] / h[3]
        elif (stereo1 and cos_st1 < cos_st2) or (stereo2 and cos_st2 < cos_st1):
            first = stereo1 and cos_st1 < cos_st2
            R, c = (R1, c1) if first else (R2, c2)
            kp, i, d = (kp1, a, d1[a]) if first else (kp2, b, d2[b])
            xc, yc = (kp[i, 0] - cx) / fx * d, (kp[i, 1] - cy) / fy * d
            for j in range(3):  # the keyframe's depth, to the world frame
                X[j] = R[0, j] * xc + R[1, j] * yc + R[2, j] * d + c[j]
        else:
            continue
        if not (np.isfinite(X[0]) and np.isfinite(X[1]) and np.isfinite(X[2])):
            continue
        if not (_reprojection_ok(R1, t1, X, kp1[a, 0], kp1[a, 1], ur1[a], level_sigma2[oct1[a]], k)
                and _reprojection_ok(R2, t2, X, kp2[b, 0], kp2[b, 1], ur2[b], level_sigma2[oct2[b]], k)):
            continue
        dist1 = np.sqrt((X[0] - c1[0]) ** 2 + (X[1] - c1[1]) ** 2 + (X[2] - c1[2]) ** 2)
        dist2 = np.sqrt((X[0] - c2[0]) ** 2 + (X[1] - c2[1]) ** 2 + (X[2] - c2[2]) ** 2)
        if not (dist1 > 0.0 and dist2 > 0.0):
            continue
        ratio_dist = dist2 / max(dist1, 1e-12)
        ratio_octave = scales[oct1[a]] / scales[oct2[b]]
        if ratio_dist * factor < ratio_octave or ratio_dist > ratio_octave * factor:
            continue  # the distances disagree with the two keypoints' scales
        xyz[m] = X
        ok[m] = True
    return xyz, ok


def warm_up() -> None:
    """Compile (or load from numba's cache) the mapping kernels on a tiny keyframe pair: compiled on the mapping
    thread's first keyframes instead, they would take seconds of it on a fresh install."""
    k = np.array([500.0, 500.0, 32.0, 24.0, 50.0])
    T1, T2 = np.eye(4), np.eye(4)
    T2[0, 3] = -0.1
    xyz, uv, one = np.array([[0.0, 0.0, 2.0]]), np.array([[32.0, 24.0]]), np.ones(1)
    scales = 1.2 ** np.arange(8)
    _reprojections_ok(T1, xyz, uv, -one, one, k)
    _fusion_candidates(T1, xyz, np.array([[0.0, 0.0, 1.0]]), one, 3 * one, k, 64, 48, float(np.log(1.2)), 8)
    view = (uv, np.zeros(1, np.int64), -one, 2 * one)
    index = np.zeros(1, np.int64)
    _checked_points(T1, T2, view, view, index, index, k, 0.1, scales**2, scales, 1.8)


def _fundamental(T1_cw: np.ndarray, T2_cw: np.ndarray, K: np.ndarray) -> np.ndarray:
    """F21 with x2' F21 x1 = 0 for pixels x1 in view 1 and x2 in view 2."""
    T21 = T2_cw @ se3_inverse(T1_cw)
    R, t = T21[:3, :3], T21[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    Kinv = np.linalg.inv(K)
    return Kinv.T @ tx @ R @ Kinv
