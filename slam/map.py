"""The map: keyframes, map points and observations as arrays, guarded by one lock.

Points live in a struct-of-arrays store addressed by integer id; observations in a table of
(keyframe, keypoint, point) rows. Callers copy what they need out under the lock and compute
outside it; nothing here calls other components.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numba as nb
import numpy as np
from numba.typed import List

from slam.geometry import se3_inverse
from slam.matching import counting_sort, medoid_descriptors, thresholds

RECYCLE_DELAY_KEYFRAMES = 4  # new keyframes before a dead point's id is handed out again (see Map._kill_points)
SINGLE_SCALE_RANGE = 2.0  # distance factor either way over which a single-level feature is expected to match


@dataclass
class KeyFrame:
    id: int
    frame_id: int
    timestamp: float
    keypoints: np.ndarray  # (N,2)
    octave: np.ndarray  # (N,)
    descriptors: np.ndarray  # (N,D)
    u_right: np.ndarray  # (N,)
    depth: np.ndarray  # (N,)
    inv_sigma2: np.ndarray  # (N,)
    point_ids: np.ndarray  # (N,) int64, -1 = none
    alive: bool = True
    parent: int = -1  # spanning-tree parent, used to place frames of culled keyframes
    colors: np.ndarray | None = None  # (N,3) uint8 image colour at each keypoint

    def release_features(self) -> None:
        """Drop the per-keypoint arrays (a keyframe culled for good): what stays places its frames."""
        for name in ("keypoints", "octave", "descriptors", "u_right", "depth", "inv_sigma2", "point_ids"):
            array = getattr(self, name)
            setattr(self, name, np.empty((0, *array.shape[1:]), dtype=array.dtype))
        self.colors = None


@dataclass(frozen=True)
class MapUpdate:
    """Keyframe poses and point positions computed outside the map (bundle adjustment, a loop correction),
    to be written in one step by Map.apply."""
    kf_ids: np.ndarray  # (K,) keyframes whose pose changes
    poses_cw: np.ndarray  # (K, 4, 4)
    pt_ids: np.ndarray  # (P,) points whose position changes
    xyz: np.ndarray  # (P, 3)
    # observations (keyframe, keypoint) found to be outliers: forgotten
    outlier_kf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    outlier_kp: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    moved: bool = False  # the map jumped as a whole (loop correction, global BA): tracking re-places its frame


class _Growable:
    """Arrays that grow by doubling; rows [0, size) have been handed out. Rows given back with free() are
    handed out again (reset to their fill values) once the caller's clock reaches their ready time."""

    def __init__(self, specs: dict[str, tuple[tuple[int, ...], np.dtype, object]], capacity: int = 1024):
        self._specs = specs
        self.size = 0
        self.capacity = capacity
        self._free: deque[tuple[int, np.ndarray]] = deque()  # (ready at clock, rows), ready times non-decreasing
        for name, (shape, dtype, fill) in specs.items():
            setattr(self, name, np.full((capacity, *shape), fill, dtype=dtype))

    def free(self, rows: np.ndarray, ready_at: int = 0) -> None:
        if len(rows):
            self._free.append((ready_at, np.array(rows, dtype=np.int64)))

    def allocate(self, count: int, clock: int = 0) -> np.ndarray:
        reused = self._reuse(count, clock)
        fresh = self._grow(count - len(reused))
        return np.concatenate([reused, fresh]) if len(reused) else fresh

    def _reuse(self, count: int, clock: int) -> np.ndarray:
        taken = []
        while count > 0 and self._free and self._free[0][0] <= clock:
            ready_at, rows = self._free.popleft()
            if len(rows) > count:
                self._free.appendleft((ready_at, rows[count:]))
            taken.append(rows[:count])
            count -= len(taken[-1])
        if not taken:
            return np.zeros(0, np.int64)
        rows = np.concatenate(taken)
        for name, (_shape, _dtype, fill) in self._specs.items():
            getattr(self, name)[rows] = fill  # a reused row starts as a new one
        return rows

    def _grow(self, count: int) -> np.ndarray:
        needed = self.size + count
        if needed > self.capacity:
            new_capacity = max(needed, 2 * self.capacity)
            for name, (shape, dtype, fill) in self._specs.items():
                grown = np.full((new_capacity, *shape), fill, dtype=dtype)
                grown[: self.size] = getattr(self, name)[: self.size]
                setattr(self, name, grown)
            self.capacity = new_capacity
        ids = np.arange(self.size, needed)
        self.size = needed
        return ids


class Map:
    def __init__(self, descriptor_size: int = 32, descriptor_dtype=np.uint8, scale_factor: float = 1.2,
                 n_levels: int = 8, recycle: bool = False):
        self.lock = threading.Lock()
        # Reuse the rows of dead points and observations (a sliding window, where the map is forgotten as it
        # goes): without it the tables grow with every point ever made.
        self.recycle = recycle
        self.scale_factor = scale_factor
        self.n_levels = n_levels
        self.match_thresholds = thresholds(descriptor_dtype)  # Hamming or L2, by descriptor type
        self.points = _Growable({
            "xyz": ((3,), np.float64, 0.0),
            "descriptor": ((descriptor_size,), descriptor_dtype, 0),
            "normal": ((3,), np.float64, 0.0),
            "min_dist": ((), np.float64, 0.0),
            "max_dist": ((), np.float64, np.inf),
            "visible": ((), np.int64, 1),
            "found": ((), np.int64, 1),
            "alive": ((), bool, False),
            "first_kf": ((), np.int64, -1),
            "ref_kf": ((), np.int64, -1),
            "n_obs": ((), np.int64, 0),  # observations, a stereo / RGB-D one counting 2 (as ORB-SLAM)
            "color": ((3,), np.uint8, 0),
            "replaced_by": ((), np.int64, -1),  # the point a fused duplicate lives on as
            "first_obs": ((), np.int64, -1),  # its live observation rows, a linked list through obs.next
            "last_obs": ((), np.int64, -1),
        })
        self.obs = _Growable({
            "kf": ((), np.int64, -1), "kp": ((), np.int64, -1), "pt": ((), np.int64, -1), "alive": ((), bool, False),
            "weight": ((), np.int64, 0),
            "octave": ((), np.int64, 0),  # the pyramid level the keyframe saw the point at
            "next": ((), np.int64, -1),  # the point's next live observation row, in the order they were added
        }, capacity=4096)
        self._connections: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # covisibility, cached per keyframe
        self.keyframes: list[KeyFrame] = []
        self.generation = 0  # changed only by apply(): the map jumped, so tracking re-places its last frame
        self.kf_poses = np.zeros((0, 4, 4))  # T_cw per keyframe id
        self.kf_T_parent = np.zeros((0, 4, 4))  # T_kf_parent, kept for culled keyframes

    # ---- keyframes ------------------------------------------------------------------------------------
    def add_keyframe(self, kf: KeyFrame, T_cw: np.ndarray) -> int:
        kf.id = len(self.keyframes)
        self.keyframes.append(kf)
        self.kf_poses = np.concatenate([self.kf_poses, T_cw[None]], axis=0)
        self.kf_T_parent = np.concatenate([self.kf_T_parent, np.eye(4)[None]], axis=0)
        return kf.id

    def alive_keyframe_ids(self) -> np.ndarray:
        return np.array([kf.id for kf in self.keyframes if kf.alive], dtype=np.int64)

    def keyframe_pose(self, kf_id: int) -> np.ndarray:
        """T_cw of a keyframe; a culled one is placed relative to its nearest living ancestor."""
        T = np.eye(4)
        while not self.keyframes[kf_id].alive:
            T = T @ self.kf_T_parent[kf_id]
            kf_id = self.keyframes[kf_id].parent
        return T @ self.kf_poses[kf_id]

    def cull_keyframe(self, kf_id: int, parent: int, release: bool = False) -> None:
        """Take a keyframe out of the map (its frames stay placed through `parent`); `release` frees its
        features too, for a sliding window that will never look at it again."""
        kf = self.keyframes[kf_id]
        kf.parent = parent
        self.kf_T_parent[kf_id] = self.kf_poses[kf_id] @ se3_inverse(self.keyframe_pose(parent))
        kf.alive = False
        rows = self._obs_rows_of_keyframes([kf_id])
        self._drop_observations(rows)
        self._connections.clear()
        if release:
            kf.release_features()

    # ---- points ---------------------------------------------------------------------------------------
    def add_points(self, xyz: np.ndarray, descriptors: np.ndarray, kf_id: int, kp_idx: np.ndarray,
                   colors: np.ndarray | None = None) -> np.ndarray:
        """New points first seen by keyframe kf_id at its keypoints kp_idx."""
        ids = self.points.allocate(len(xyz), clock=len(self.keyframes))
        p = self.points
        p.xyz[ids] = xyz
        p.descriptor[ids] = descriptors
        p.alive[ids] = True
        p.first_kf[ids] = kf_id
        p.ref_kf[ids] = kf_id
        p.visible[ids] = 1
        p.found[ids] = 1
        p.n_obs[ids] = 0
        if colors is not None:
            p.color[ids] = colors
        self.add_observations(np.full(len(ids), kf_id), kp_idx, ids)
        return ids

    def add_observations(self, kf_ids: np.ndarray, kp_idx: np.ndarray, pt_ids: np.ndarray) -> None:
        if len(pt_ids) == 0:
            return
        rows = self.obs.allocate(len(pt_ids))
        self.obs.kf[rows] = kf_ids
        self.obs.kp[rows] = kp_idx
        self.obs.pt[rows] = pt_ids
        self.obs.alive[rows] = True
        for kf_id in np.unique(kf_ids):
            sel = kf_ids == kf_id
            kf = self.keyframes[int(kf_id)]
            kf.point_ids[kp_idx[sel]] = pt_ids[sel]
            self.obs.weight[rows[sel]] = np.where(kf.u_right[kp_idx[sel]] >= 0, 2, 1)
            self.obs.octave[rows[sel]] = kf.octave[kp_idx[sel]]
        np.add.at(self.points.n_obs, pt_ids, self.obs.weight[rows])
        _link(self.points.first_obs, self.points.last_obs, self.obs.next, rows, np.asarray(pt_ids, np.int64))

    def cull_points(self, pt_ids: np.ndarray) -> None:
        if len(pt_ids) == 0:
            return
        self._kill_points(pt_ids)
        self._drop_observations(self._rows_of_points(pt_ids))

    def remove_observations(self, kf_ids: np.ndarray, kp_idx: np.ndarray) -> None:
        """Forget the given (keyframe, keypoint) associations, e.g. BA outliers."""
        kf_ids, kp_idx = np.asarray(kf_ids, np.int64), np.asarray(kp_idx, np.int64)
        pts = np.empty(len(kf_ids), np.int64)
        for kf_id in np.unique(kf_ids).tolist():
            sel = kf_ids == kf_id
            pts[sel] = self.keyframes[kf_id].point_ids[kp_idx[sel]]
        self._drop_observations(_rows_matching(self.points.first_obs, self.obs.next, self.obs.kf, self.obs.kp,
                                               pts, kf_ids, kp_idx))

    def replace_point(self, old: int, new: int) -> None:
        """Fuse duplicate `old` into `new`: its observations move over unless the keyframe already sees `new`."""
        self._replace(-1, np.array([old], np.int64), np.array([new], np.int64), decide=False)

    def fuse_matches(self, kf_id: int, pt_ids: np.ndarray, kp_idx: np.ndarray) -> int:
        """Points projected into keyframe kf_id and matched to its keypoints (ORB-SLAM's Fuse), in order: where the
        keypoint has a live point, the one of the two with fewer observations is replaced by the other (ties keep
        the keypoint's); where it has none, the point gains the observation. Returns the pairs fused."""
        fused, add_kp, add_pt = self._replace(kf_id, np.asarray(pt_ids, np.int64), np.asarray(kp_idx, np.int64),
                                              decide=True)
        if len(add_pt):
            self.add_observations(np.full(len(add_pt), kf_id), add_kp, add_pt)
        return fused

    def _replace(self, kf_id: int, first: np.ndarray, second: np.ndarray, decide: bool):
        """Point replacements done in order in one compiled call (was a Python loop of replace_point holding the
        GIL: 60% of the mapping thread's GIL time on teddy RGB-D). Keypoint associations of keyframe kf_id are
        written in place; those of other keyframes come back as the last value per (keyframe, keypoint)."""
        p, o = self.points, self.obs
        live = self.keyframes[kf_id].point_ids if kf_id >= 0 else np.zeros(0, np.int64)
        fused, add_kp, add_pt, kfs, kps, values, killed, dropped = _replace_points(
            (p.alive, p.n_obs, p.visible, p.found, p.replaced_by, p.first_obs, p.last_obs, p.ref_kf),
            (o.kf, o.kp, o.pt, o.alive, o.weight, o.next), kf_id, live, first, second, decide)
        for k in np.unique(kfs).tolist():
            sel = kfs == k
            self.keyframes[k].point_ids[kps[sel]] = values[sel]
        if self.recycle:
            self.points.free(killed, ready_at=len(self.keyframes) + RECYCLE_DELAY_KEYFRAMES)
            self.obs.free(dropped)
        return fused, add_kp, add_pt

    def _drop_observations(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        rows = rows[self.obs.alive[rows]]
        self.obs.alive[rows] = False
        pts, kfs, kps = self.obs.pt[rows], self.obs.kf[rows], self.obs.kp[rows]
        p = self.points
        np.add.at(p.n_obs, pts, -self.obs.weight[rows])
        _unlink(p.first_obs, p.last_obs, self.obs.next, rows, pts)
        for kf_id in np.unique(kfs).tolist():
            sel = kfs == kf_id
            point_ids = self.keyframes[kf_id].point_ids
            cleared = kps[sel][point_ids[kps[sel]] == pts[sel]]
            point_ids[cleared] = -1
        # A point whose reference keyframe lost it moves on to its first remaining observer.
        moves = (p.ref_kf[pts] == kfs) & (p.first_obs[pts] >= 0)
        p.ref_kf[pts[moves]] = self.obs.kf[p.first_obs[pts[moves]]]
        # A point seen by fewer than one keyframe is gone.
        self._kill_points(self.obs.pt[rows][self.points.n_obs[self.obs.pt[rows]] <= 0])
        if self.recycle:
            self.obs.free(rows)

    def _kill_points(self, pt_ids: np.ndarray) -> None:
        """Mark points dead; with recycling their ids are reused only after RECYCLE_DELAY_KEYFRAMES more
        keyframes, by when no frame, local map or recent-point list of tracking and mapping can still hold them."""
        ids = np.unique(pt_ids[self.points.alive[pt_ids]])
        self.points.alive[ids] = False
        if self.recycle:
            self.points.free(ids, ready_at=len(self.keyframes) + RECYCLE_DELAY_KEYFRAMES)

    def _obs_rows_of_keyframes(self, kf_ids) -> np.ndarray:
        ids = np.concatenate([self.keyframes[int(k)].point_ids for k in kf_ids])
        rows = self._rows_of_points(np.unique(ids[ids >= 0]))
        return rows[np.isin(self.obs.kf[rows], kf_ids)]

    def _rows_of_points(self, pt_ids: np.ndarray) -> np.ndarray:
        return _rows_of(self.points.first_obs, self.obs.next, np.asarray(pt_ids, dtype=np.int64))

    def observations_of_points(self, pt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keyframe ids, keypoint indices, point ids) of every live observation of the given points."""
        rows = self._rows_of_points(pt_ids)
        return self.obs.kf[rows], self.obs.kp[rows], self.obs.pt[rows]

    # ---- covisibility ---------------------------------------------------------------------------------
    def covisible(self, kf_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Keyframes sharing points with kf_id, strongest first, with the number of shared points.

        Cached: local mapping refreshes the connections of the keyframes it changes (refresh_connections).
        """
        cached = self._connections.get(kf_id)
        if cached is None:
            pts = self.keyframes[kf_id].point_ids
            cached = self.covisible_with_points(pts[pts >= 0], exclude=kf_id)
            self._connections[kf_id] = cached
        return cached

    def refresh_connections(self, kf_ids) -> None:
        """Recompute the cached covisibility of these keyframes now (so tracking finds it cached)."""
        for kf_id in kf_ids:
            self._connections.pop(int(kf_id), None)
            if self.keyframes[int(kf_id)].alive:
                self.covisible(int(kf_id))

    def covisible_with_points(self, pt_ids: np.ndarray, exclude: int = -1,
                              min_weight: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Keyframes (but `exclude`) observing at least min_weight of the points, most first (equal counts in id
        order), with their counts."""
        return _covisible(self.points.first_obs, self.obs.next, self.obs.kf, np.asarray(pt_ids, dtype=np.int64),
                          len(self.keyframes), exclude, min_weight)

    def observer_counts(self, pt_ids: np.ndarray) -> np.ndarray:
        """Per keyframe id, its observations of the given points."""
        return _observer_counts(self.points.first_obs, self.obs.next, self.obs.kf, np.asarray(pt_ids, dtype=np.int64),
                                len(self.keyframes))

    def seen_elsewhere(self, pt_ids: np.ndarray, kf_id: int, max_octave: np.ndarray) -> np.ndarray:
        """Per point, its observations by keyframes other than kf_id at octave max_octave[i] or finer."""
        return _seen_elsewhere(self.points.first_obs, self.obs.next, self.obs.kf, self.obs.octave,
                               np.asarray(pt_ids, dtype=np.int64), kf_id, np.asarray(max_octave, dtype=np.int64))

    # ---- derived point attributes ---------------------------------------------------------------------
    def apply(self, update: MapUpdate, refresh: np.ndarray | None = None) -> None:
        """Write an update (lock held by the caller): poses, positions, outlier observations forgotten, then the
        viewing geometry of `refresh` (default: the points written) recomputed. A jump of the whole map
        (`update.moved`) changes `generation`, by which tracking knows to re-place its last frame."""
        self.kf_poses[update.kf_ids] = update.poses_cw
        self.points.xyz[update.pt_ids] = update.xyz
        if len(update.outlier_kf):
            self.remove_observations(update.outlier_kf, update.outlier_kp)
        self.update_point_geometry(update.pt_ids if refresh is None else refresh)
        if update.moved:
            self.generation += 1

    def count_tracked(self, visible: np.ndarray, found: np.ndarray) -> None:
        """A frame's tracking statistics (lock held): points in its view, and points it matched."""
        self.points.visible[visible] += 1
        self.points.found[found] += 1

    def update_point_geometry(self, pt_ids: np.ndarray) -> None:
        """Viewing direction and scale-invariance distance range from the observing keyframes."""
        pt_ids = pt_ids[self.points.alive[pt_ids]]
        if len(pt_ids) == 0:
            return
        centers = self._keyframe_centers(np.arange(len(self.keyframes)))
        p = self.points
        ray_sum, octave = _viewing_rays(p.first_obs, self.obs.next, self.obs.kf, self.obs.octave, centers, p.xyz,
                                        pt_ids, p.ref_kf)
        p.normal[pt_ids] = ray_sum / np.maximum(np.linalg.norm(ray_sum, axis=1, keepdims=True), 1e-12)
        dist = np.linalg.norm(p.xyz[pt_ids] - centers[p.ref_kf[pt_ids]], axis=1)
        level_scale = self.scale_factor ** octave
        self.points.max_dist[pt_ids] = dist * level_scale
        self.points.min_dist[pt_ids] = dist * level_scale / self.scale_factor ** (self.n_levels - 1)
        if self.n_levels == 1:  # single-scale (learned) descriptors still match over a moderate change of distance
            self.points.max_dist[pt_ids] = dist * SINGLE_SCALE_RANGE
            self.points.min_dist[pt_ids] = dist / SINGLE_SCALE_RANGE

    def update_point_descriptors(self, pt_ids: np.ndarray) -> None:
        """Pick, per point, the observed descriptor with the least median distance to the others."""
        pt_ids = pt_ids[self.points.alive[pt_ids]]
        kf_ids, kp_idx, pts = self.observations_of_points(pt_ids)
        if len(pts) == 0:
            return
        order = np.argsort(pts, kind="stable")
        kf_ids, kp_idx, pts = kf_ids[order], kp_idx[order], pts[order]
        descs = np.empty((len(pts), self.points.descriptor.shape[1]), dtype=self.points.descriptor.dtype)
        for kf_id in np.unique(kf_ids).tolist():
            sel = kf_ids == kf_id
            descs[sel] = self.keyframes[kf_id].descriptors[kp_idx[sel]]
        starts = np.r_[0, np.flatnonzero(np.diff(pts)) + 1]
        ends = np.r_[starts[1:], len(pts)]
        self.points.descriptor[pts[starts]] = descs[medoid_descriptors(descs, starts, ends)]

    def _keyframe_centers(self, kf_ids: np.ndarray) -> np.ndarray:
        poses = self.kf_poses[kf_ids]
        R = poses[:, :3, :3]
        t = poses[:, :3, 3]
        return -np.einsum("nji,nj->ni", R, t)

    def resolve_points(self, pt_ids: np.ndarray) -> np.ndarray:
        """Follow fused points to the point that replaced them; -1 where the point is gone."""
        ids = np.asarray(pt_ids, dtype=np.int64).copy()
        p = self.points
        for _ in range(16):  # fusion chains are short
            moved = (ids >= 0) & ~p.alive[np.maximum(ids, 0)] & (p.replaced_by[np.maximum(ids, 0)] >= 0)
            if not np.any(moved):
                break
            ids[moved] = p.replaced_by[ids[moved]]
        ids[(ids >= 0) & ~p.alive[np.maximum(ids, 0)]] = -1
        return ids

    def alive_point_ids(self) -> np.ndarray:
        return np.flatnonzero(self.points.alive[: self.points.size])


def warm_up(descriptor_size: int = 32, descriptor_dtype=np.uint8) -> None:
    """Exercise a throwaway two-keyframe map so numba loads (or compiles) every observation-index kernel before
    timing starts. Left to the run, the first keyframes loaded eleven of them on the tracking and mapping
    threads (2-13 ms each with a warm cache, seconds each on a fresh install)."""
    m = Map(descriptor_size, descriptor_dtype)
    n = 4
    for i in range(2):
        kf = KeyFrame(0, i, float(i), np.zeros((n, 2), np.float32), np.zeros(n, np.int64),
                      np.zeros((n, descriptor_size), descriptor_dtype), np.full(n, -1.0), np.full(n, -1.0),
                      np.ones(n), np.full(n, -1, np.int64))
        T = np.eye(4)
        T[0, 3] = -0.1 * i
        m.add_keyframe(kf, T)
    xyz = np.array([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0], [0.0, 0.1, 2.0], [0.1, 0.1, 2.0]])
    kp = np.arange(n, dtype=np.int64)
    ids = m.add_points(xyz, np.zeros((n, descriptor_size), descriptor_dtype), 0, kp)
    m.add_observations(np.ones(n - 1, np.int64), kp[:-1], ids[:-1])
    m.covisible(1)
    m.observer_counts(ids)
    m.seen_elsewhere(ids, 1, np.zeros(n, np.int64))
    m.update_point_geometry(ids)
    m.update_point_descriptors(ids)
    m.fuse_matches(1, ids[-1:], kp[-1:])
    m.replace_point(int(ids[0]), int(ids[1]))
    m.remove_observations(np.ones(1, np.int64), kp[2:3])
    m.cull_points(ids[3:])
    m.cull_keyframe(1, 0)


def id_mask(ids: np.ndarray, size: int) -> np.ndarray:
    """(size,) bool, True at the non-negative entries of ids: membership of point (or keyframe) ids by lookup,
    where np.isin sorts both arrays (a fifth of fusion's time, 4% of tracking's, in sync teddy profiles)."""
    mask = np.zeros(size, bool)
    mask[ids[ids >= 0]] = True
    return mask


# ---- the observation index: each point's live rows as a linked list (compiled, the GIL released) ----------------
# It was a dict of Python lists: gathering the rows of a keyframe's points held the GIL and was 28% of a sync
# teddy RGB-D run (covisibility refresh after every keyframe, keyframe culling, BA gather).

@nb.njit(cache=True, nogil=True)
def _link(first, last, nxt, rows, pts):
    """Append each row to its point's list."""
    for i in range(rows.shape[0]):
        _append(first, last, nxt, rows[i], pts[i])


@nb.njit(cache=True, nogil=True, inline="always")
def _append(first, last, nxt, row, pt):
    nxt[row] = -1
    if last[pt] < 0:
        first[pt] = row
    else:
        nxt[last[pt]] = row
    last[pt] = row


@nb.njit(cache=True, nogil=True)
def _unlink(first, last, nxt, rows, pts):
    """Take each row out of its point's list (a row not in it is left alone)."""
    for i in range(rows.shape[0]):
        row, pt = rows[i], pts[i]
        prev, cur = -1, first[pt]
        while cur >= 0 and cur != row:
            prev, cur = cur, nxt[cur]
        if cur < 0:
            continue
        if prev < 0:
            first[pt] = nxt[row]
        else:
            nxt[prev] = nxt[row]
        if last[pt] == row:
            last[pt] = prev
        nxt[row] = -1


@nb.njit(cache=True, nogil=True)
def _rows_of(first, nxt, pts):
    """The live rows of the given points, point by point, each point's in the order they were added."""
    n = 0
    for pt in pts:
        if pt >= 0:
            row = first[pt]
            while row >= 0:
                n += 1
                row = nxt[row]
    out = np.empty(n, np.int64)
    n = 0
    for pt in pts:
        if pt >= 0:
            row = first[pt]
            while row >= 0:
                out[n] = row
                n += 1
                row = nxt[row]
    return out


@nb.njit(cache=True, nogil=True)
def _rows_matching(first, nxt, obs_kf, obs_kp, pts, kf_ids, kp_idx):
    """Rows of point pts[i] made by keyframe kf_ids[i] at keypoint kp_idx[i]."""
    out = []
    for i in range(pts.shape[0]):
        if pts[i] < 0:
            continue
        row = first[pts[i]]
        while row >= 0:
            if obs_kf[row] == kf_ids[i] and obs_kp[row] == kp_idx[i]:
                out.append(row)
            row = nxt[row]
    return np.array(out, dtype=np.int64)


@nb.njit(cache=True, nogil=True)
def _observer_counts(first, nxt, obs_kf, pts, n_kf):
    """Observations of the given points per keyframe."""
    counts = np.zeros(n_kf, np.int64)
    for pt in pts:
        if pt >= 0:
            row = first[pt]
            while row >= 0:
                counts[obs_kf[row]] += 1
                row = nxt[row]
    return counts


@nb.njit(cache=True, nogil=True)
def _covisible(first, nxt, obs_kf, pts, n_kf, exclude, min_weight):
    """Map.covisible_with_points in one call (it was six numpy calls per keyframe refreshed, ~100 per keyframe
    mapped): the counts, then a stable counting sort of the keyframes by count, largest first."""
    counts = _observer_counts(first, nxt, obs_kf, pts, n_kf)
    if exclude >= 0:
        counts[exclude] = 0
    top = 0
    for c in counts:
        top = max(top, c)
    ids = np.flatnonzero(counts >= min_weight)
    ids = counting_sort(ids, top - counts[ids], top + 1)
    return ids, counts[ids]


@nb.njit(cache=True, nogil=True)
def _seen_elsewhere(first, nxt, obs_kf, obs_octave, pts, kf_id, max_octave):
    counts = np.zeros(pts.shape[0], np.int64)
    for i in range(pts.shape[0]):
        if pts[i] >= 0:
            row = first[pts[i]]
            while row >= 0:
                if obs_kf[row] != kf_id and obs_octave[row] <= max_octave[i]:
                    counts[i] += 1
                row = nxt[row]
    return counts


@nb.njit(cache=True, nogil=True)
def _viewing_rays(first, nxt, obs_kf, obs_octave, centers, xyz, pts, ref_kf):
    """Per point, the sum of its unit rays from the observing keyframes' centres, and the octave its reference
    keyframe saw it at (0 if that keyframe no longer observes it). Was per-observation numpy and a dict built in
    Python, under the GIL."""
    ray_sum = np.zeros((pts.shape[0], 3))
    octave = np.zeros(pts.shape[0], np.int64)
    ray = np.empty(3)
    for i in range(pts.shape[0]):
        row = first[pts[i]]
        while row >= 0:
            k = obs_kf[row]
            for a in range(3):
                ray[a] = xyz[pts[i], a] - centers[k, a]
            norm = max(np.sqrt(ray[0] * ray[0] + ray[1] * ray[1] + ray[2] * ray[2]), 1e-12)
            for a in range(3):
                ray_sum[i, a] += ray[a] / norm
            if k == ref_kf[pts[i]]:
                octave[i] = obs_octave[row]
            row = nxt[row]
    return ray_sum, octave


@nb.njit(cache=True, nogil=True)
def _replace_points(points, obs, kf_id, live, first, second, decide):
    """Replace points in order, as Map.replace_point one pair at a time. decide=False: first[i] is replaced by
    second[i]. decide=True (fusion into keyframe kf_id): first[i] is a point and second[i] the keypoint of kf_id it
    matched; if that keypoint has a live point the one with fewer observations goes, if it has none the pair is
    returned to be added (unless kf_id sees that point by the end). Keyframe kf_id's associations (`live`) are
    written here, other keyframes' are returned as (keyframe, keypoint, value), the last value per keypoint. Relies
    on the map invariant that a live row (keyframe, keypoint, point) is mirrored in the keyframe."""
    alive, n_obs, visible, found, replaced_by, first_obs, last_obs, ref_kf = points
    o_kf, o_kp, o_pt, o_alive, o_weight, nxt = obs
    fused = 0
    add_kp = List.empty_list(nb.int64)
    add_pt = List.empty_list(nb.int64)
    log_kf = List.empty_list(nb.int64)
    log_kp = List.empty_list(nb.int64)
    log_val = List.empty_list(nb.int64)
    killed = List.empty_list(nb.int64)
    dropped = List.empty_list(nb.int64)
    seen = List.empty_list(nb.int64)
    for i in range(first.shape[0]):
        if decide:
            pid, k = first[i], second[i]
            if not alive[pid]:
                continue
            existing = live[k]
            if existing < 0:
                add_kp.append(k)
                add_pt.append(pid)
                continue
            if not alive[existing]:
                continue
            fused += 1
            if n_obs[existing] >= n_obs[pid]:
                old, new = pid, existing
            else:
                old, new = existing, pid
        else:
            old, new = first[i], second[i]
        if old == new or not alive[old] or not alive[new]:
            continue
        visible[new] += visible[old]
        found[new] += found[old]
        seen.clear()
        row = first_obs[new]
        while row >= 0:
            seen.append(o_kf[row])
            row = nxt[row]
        # Rows of `old` by a keyframe that already sees `new` are dropped, the others move to `new`.
        row = first_obs[old]
        prev = -1
        ref_dropped = False
        while row >= 0:
            following = nxt[row]
            k = o_kf[row]
            if _contains(seen, k):
                o_alive[row] = False
                n_obs[old] -= o_weight[row]
                if prev < 0:
                    first_obs[old] = following
                else:
                    nxt[prev] = following
                if last_obs[old] == row:
                    last_obs[old] = prev
                nxt[row] = -1
                dropped.append(row)
                _set_association(k, o_kp[row], -1, kf_id, live, log_kf, log_kp, log_val)
                ref_dropped |= ref_kf[old] == k
            else:
                seen.append(k)
                prev = row
            row = following
        if ref_dropped and first_obs[old] >= 0:  # its reference keyframe lost it: its first remaining observer
            ref_kf[old] = o_kf[first_obs[old]]
        if n_obs[old] <= 0:  # every row dropped: the point is gone
            alive[old] = False
            killed.append(old)
        row = first_obs[old]
        while row >= 0:
            following = nxt[row]
            _append(first_obs, last_obs, nxt, row, new)
            o_pt[row] = new
            n_obs[new] += o_weight[row]
            n_obs[old] -= o_weight[row]
            _set_association(o_kf[row], o_kp[row], new, kf_id, live, log_kf, log_kp, log_val)
            row = following
        first_obs[old] = -1
        last_obs[old] = -1
        if alive[old]:
            alive[old] = False
            killed.append(old)
        replaced_by[old] = new
    if decide and len(add_pt):  # one observation per point and keyframe: none for a point kf_id now sees
        sees = np.zeros(alive.shape[0], np.bool_)
        for pt in live:
            if pt >= 0:
                sees[pt] = True
        kept_kp = List.empty_list(nb.int64)
        kept_pt = List.empty_list(nb.int64)
        for j in range(len(add_pt)):
            if not sees[add_pt[j]]:
                kept_kp.append(add_kp[j])
                kept_pt.append(add_pt[j])
        add_kp, add_pt = kept_kp, kept_pt
    # The last value written per (keyframe, keypoint) of the other keyframes.
    n = len(log_kf)
    keep = np.zeros(n, np.bool_)
    last = {}
    for j in range(n - 1, -1, -1):
        key = (log_kf[j], log_kp[j])
        if key not in last:
            last[key] = j
            keep[j] = True
    idx = np.flatnonzero(keep)
    return (fused, _array(add_kp), _array(add_pt), _array(log_kf)[idx], _array(log_kp)[idx], _array(log_val)[idx],
            _array(killed), _array(dropped))


@nb.njit(cache=True, nogil=True, inline="always")
def _set_association(kf, kp, value, kf_id, live, log_kf, log_kp, log_val):
    if kf == kf_id:
        live[kp] = value
    else:
        log_kf.append(kf)
        log_kp.append(kp)
        log_val.append(value)


@nb.njit(cache=True, nogil=True, inline="always")
def _contains(values, x):
    for v in values:
        if v == x:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def _array(values):
    out = np.empty(len(values), np.int64)
    for i in range(len(values)):
        out[i] = values[i]
    return out
