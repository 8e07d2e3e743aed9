"""The local map the tracker matches against: points of the keyframes around the current frame.

Copied out of the Map under its lock, then used without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.map import Map


@dataclass
class LocalMap:
    keyframe_ids: np.ndarray
    point_ids: np.ndarray
    xyz: np.ndarray
    descriptors: np.ndarray
    normals: np.ndarray
    min_dist: np.ndarray
    max_dist: np.ndarray

    @staticmethod
    def gather(slam_map: Map, matched_point_ids: np.ndarray, fallback_kf: int,
               max_keyframes: int = 40, neighbours: int = 10, expand: int = 10) -> LocalMap:
        """Keyframes that see the matched points, plus their best covisible neighbours, and all their points."""
        with slam_map.lock:
            # Vote by each matched point's first keyframe: a cheap stand-in for all its observers, whose other
            # observers the covisibility expansion below brings in. (Tracking picks its reference keyframe
            # from all observers of the frame's final inliers instead: Tracker._most_shared_keyframe.)
            votes = np.bincount(slam_map.points.ref_kf[matched_point_ids], minlength=len(slam_map.keyframes))
            kf_ids = np.flatnonzero(votes)
            kf_ids = kf_ids[np.argsort(-votes[kf_ids], kind="stable")]
            kf_ids = np.array([k for k in kf_ids.tolist() if slam_map.keyframes[k].alive], dtype=np.int64)
            first = list(kf_ids[:max_keyframes]) if len(kf_ids) else [fallback_kf]
            chosen = dict.fromkeys(int(k) for k in first)
            # Neighbours of the keyframes sharing most points with the frame (cached covisibility lists).
            for kf_id in first[:expand]:
                if len(chosen) >= max_keyframes:
                    break
                near, _ = slam_map.covisible(int(kf_id))
                for n in near[:neighbours]:
                    if slam_map.keyframes[int(n)].alive:
                        chosen.setdefault(int(n))
            ids = np.fromiter(chosen, dtype=np.int64)
            pts = np.concatenate([slam_map.keyframes[k].point_ids for k in ids]) if len(ids) else np.zeros(0, np.int64)
        # Sorted distinct ids, outside the lock: marked in a mask, as np.unique's sort was 8% of tracking (py-spy).
        pts = pts[pts >= 0]
        seen = np.zeros(int(pts.max()) + 1 if len(pts) else 0, bool)
        seen[pts] = True
        pts = np.flatnonzero(seen)
        with slam_map.lock:
            pts = pts[slam_map.points.alive[pts]]
            p = slam_map.points
            return LocalMap(ids, pts, p.xyz[pts].copy(), p.descriptor[pts].copy(), p.normal[pts].copy(),
                            p.min_dist[pts].copy(), p.max_dist[pts].copy())
