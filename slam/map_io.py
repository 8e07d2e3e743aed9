"""Map files: save a finished map, load it to localise against it or to continue mapping.

Format (version 1), one .npz archive written atomically (a temporary file, then a rename):
- `meta`: JSON text: {"format": "slam-map", "version": 1, "mode", "descriptor_dtype", "descriptor_size",
  "scale_factor", "n_levels", "camera": {fx, fy, cx, cy, width, height, baseline}}.
- keyframes (living ones only, renumbered 0..K-1): `kf_pose` (K,4,4) T_cw, `kf_timestamp` (K,),
  `kf_frame_id` (K,), `kf_offset` (K+1,) into the stacked per-keypoint arrays `kp_uv` (M,2),
  `kp_octave`, `kp_descriptor` (M,D), `kp_u_right`, `kp_depth`, `kp_inv_sigma2`, `kp_color` (M,3).
- points (living ones, renumbered 0..P-1): `pt_xyz` (P,3), `pt_descriptor` (P,D), `pt_color` (P,3).
- observations: `obs_kf`, `obs_kp`, `obs_pt` (O,), keyframe / keypoint / point indices as above.
Loading rebuilds the map through its public methods, so the file does not depend on its internal layout.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from slam.camera import Camera
from slam.errors import SlamInputError
from slam.map import KeyFrame, Map
from slam.npzfile import read_npz

FORMAT = "slam-map"
VERSION = 1
_KP_ARRAYS = ("kp_uv", "kp_octave", "kp_descriptor", "kp_u_right", "kp_depth", "kp_inv_sigma2", "kp_color")
_KEYS = ("meta", "kf_pose", "kf_timestamp", "kf_frame_id", "kf_offset", *_KP_ARRAYS, "pt_xyz", "pt_descriptor",
         "pt_color", "obs_kf", "obs_kp", "obs_pt")


def save_map(path: str | Path, slam_map: Map, camera: Camera, mode: str) -> Path:
    path = Path(path)
    with slam_map.lock:
        arrays = _map_arrays(slam_map)
    meta = {"format": FORMAT, "version": VERSION, "mode": mode,
            "descriptor_dtype": str(arrays["pt_descriptor"].dtype),
            "descriptor_size": int(arrays["pt_descriptor"].shape[1]),
            "scale_factor": slam_map.scale_factor, "n_levels": slam_map.n_levels,
            "camera": {k: getattr(camera, k) for k in ("fx", "fy", "cx", "cy", "width", "height", "baseline")}}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _map_arrays(m: Map) -> dict[str, np.ndarray]:
    kf_ids = m.alive_keyframe_ids()
    kf_index = np.full(len(m.keyframes), -1, np.int64)
    kf_index[kf_ids] = np.arange(len(kf_ids))
    pts = m.alive_point_ids()
    obs_kf, obs_kp, obs_pt = m.observations_of_points(pts)
    keep = kf_index[obs_kf] >= 0
    pt_index = np.full(m.points.size, -1, np.int64)
    pt_index[pts] = np.arange(len(pts))
    kfs = [m.keyframes[k] for k in kf_ids.tolist()]
    sizes = [len(kf.keypoints) for kf in kfs]

    def stack(get, shape, dtype):
        parts = [get(kf) for kf in kfs]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *shape), dtype)

    d = m.points.descriptor
    return {
        "kf_pose": m.kf_poses[kf_ids].copy(), "kf_timestamp": np.array([kf.timestamp for kf in kfs], float),
        "kf_frame_id": np.array([kf.frame_id for kf in kfs], np.int64),
        "kf_offset": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "kp_uv": stack(lambda kf: kf.keypoints, (2,), np.float32),
        "kp_octave": stack(lambda kf: kf.octave, (), np.int32),
        "kp_descriptor": stack(lambda kf: kf.descriptors, d.shape[1:], d.dtype),
        "kp_u_right": stack(lambda kf: kf.u_right, (), np.float64),
        "kp_depth": stack(lambda kf: kf.depth, (), np.float64),
        "kp_inv_sigma2": stack(lambda kf: kf.inv_sigma2, (), np.float64),
        "kp_color": stack(lambda kf: kf.colors if kf.colors is not None else np.zeros((len(kf.keypoints), 3)),
                          (3,), np.uint8),
        "pt_xyz": m.points.xyz[pts].copy(), "pt_descriptor": d[pts].copy(), "pt_color": m.points.color[pts].copy(),
        "obs_kf": kf_index[obs_kf[keep]], "obs_kp": obs_kp[keep].astype(np.int64), "obs_pt": pt_index[obs_pt[keep]],
    }


def load_map(path: str | Path, camera: Camera, mode: str, recycle: bool = False) -> Map:
    """The saved map, checked against the camera and mode it will be used with."""
    path = Path(path)
    arrays = read_npz(path, _KEYS, "map")
    meta = _meta(arrays, path)
    _check_compatible(meta, camera, mode, path)
    try:
        return _rebuild(arrays, meta, recycle)
    except (ValueError, IndexError, TypeError) as exc:
        raise SlamInputError(f"inconsistent map file ({' '.join(str(exc).split())})", path) from None


def _meta(arrays: dict[str, np.ndarray], path: Path) -> dict:
    try:
        meta = json.loads(str(arrays["meta"]))
    except (ValueError, TypeError):
        raise SlamInputError("not a map file (unreadable metadata)", path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SlamInputError("not a map file (wrong format tag)", path)
    if meta.get("version") != VERSION:
        raise SlamInputError(f"map format version {meta.get('version')} is not supported (this slam reads "
                             f"version {VERSION})", path)
    return meta


def _check_compatible(meta: dict, camera: Camera, mode: str, path: Path) -> None:
    if meta.get("mode") != mode:
        raise SlamInputError(f"the map was built in mode {meta.get('mode')}, not {mode}", path)
    saved = meta.get("camera", {})
    for key in ("fx", "fy", "cx", "cy", "width", "height"):
        value = saved.get(key)
        if not isinstance(value, int | float) or abs(value - getattr(camera, key)) > 1e-3 * max(1.0, abs(value)):
            raise SlamInputError(f"the map was built with camera {key}={value}, this sequence has "
                                 f"{getattr(camera, key)}", path)


def _rebuild(a: dict[str, np.ndarray], meta: dict, recycle: bool) -> Map:
    dtype = np.dtype(meta["descriptor_dtype"])
    m = Map(int(meta["descriptor_size"]), dtype, float(meta["scale_factor"]), int(meta["n_levels"]), recycle=recycle)
    offsets = a["kf_offset"]
    n_kf = len(a["kf_pose"])
    if len(offsets) != n_kf + 1 or np.any(np.diff(offsets) < 0) or offsets[-1] != len(a["kp_uv"]):
        raise ValueError("keyframe offsets do not match the keypoints")
    for k in range(n_kf):
        s = slice(int(offsets[k]), int(offsets[k + 1]))
        kf = KeyFrame(-1, int(a["kf_frame_id"][k]), float(a["kf_timestamp"][k]), a["kp_uv"][s],
                      a["kp_octave"][s].astype(np.int64), a["kp_descriptor"][s].astype(dtype), a["kp_u_right"][s],
                      a["kp_depth"][s], a["kp_inv_sigma2"][s], np.full(s.stop - s.start, -1, np.int64),
                      colors=a["kp_color"][s])
        m.add_keyframe(kf, a["kf_pose"][k])
    obs_kf, obs_kp, obs_pt = a["obs_kf"], a["obs_kp"], a["obs_pt"]
    n_pt = len(a["pt_xyz"])
    if len(obs_pt) and (obs_pt.min() < 0 or obs_pt.max() >= n_pt or obs_kf.min() < 0 or obs_kf.max() >= n_kf):
        raise ValueError("observations refer to missing keyframes or points")
    order = np.argsort(obs_pt, kind="stable")
    obs_kf, obs_kp, obs_pt = obs_kf[order], obs_kp[order], obs_pt[order]
    first = np.searchsorted(obs_pt, np.arange(n_pt))
    seen = first < len(obs_pt)
    seen[seen] = obs_pt[first[seen]] == np.arange(n_pt)[seen]
    ids = np.full(n_pt, -1, np.int64)
    for k in np.unique(obs_kf[first[seen]]).tolist():  # each point starts at its first observer
        sel = np.flatnonzero(seen)[obs_kf[first[seen]] == k]
        ids[sel] = m.add_points(a["pt_xyz"][sel], a["pt_descriptor"][sel].astype(dtype), k,
                                obs_kp[first[sel]], a["pt_color"][sel])
    rest = np.ones(len(obs_pt), bool)
    rest[first[seen]] = False
    rest &= ids[obs_pt] >= 0
    m.add_observations(obs_kf[rest], obs_kp[rest], ids[obs_pt[rest]])
    alive = m.alive_point_ids()
    m.update_point_geometry(alive)
    m.refresh_connections(m.alive_keyframe_ids().tolist())
    return m
