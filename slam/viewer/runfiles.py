"""A finished run's folder (map.ply, trajectory.tum, keyframes.tum) as a Snapshot, for `slam view` and the
demo's overview image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slam.errors import SlamInputError
from slam.trajectory import Trajectory, read_tum
from slam.viewer.align import align_rigid
from slam.viewer.snapshot import Snapshot

MAP = "map.ply"
TRAJECTORY = "trajectory.tum"
KEYFRAMES = "keyframes.tum"


def load_run(folder: str | Path, groundtruth: Trajectory | None = None) -> Snapshot:
    folder = Path(folder)
    if not folder.is_dir():
        raise SlamInputError("run folder not found", folder)
    for name in (MAP, TRAJECTORY):
        if not (folder / name).is_file():
            raise SlamInputError(f"not a finished run: {name} is missing (slam run writes it)", folder)
    xyz, rgb = read_ply(folder / MAP)
    trajectory = _read_trajectory(folder / TRAJECTORY)
    keyframes = _read_trajectory(folder / KEYFRAMES) if (folder / KEYFRAMES).is_file() else None
    gt = None
    if groundtruth is not None and len(trajectory):
        gt = align_rigid(groundtruth, trajectory.timestamps, trajectory.positions)
    frames = _frames(folder)
    return Snapshot(
        frame_index=frames - 1,
        state="finished",
        keyframe_poses=np.zeros((0, 4, 4)) if keyframes is None else keyframes.poses,
        trajectory=trajectory.positions.copy(),
        points=xyz,
        colors=rgb,
        current_pose=trajectory.poses[-1].copy() if len(trajectory) else None,
        groundtruth=gt,
        n_frames=frames,
        final=True,
    )


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """xyz (N,3) float32 and RGB (N,3) uint8 (grey where the file has no colours) of an ASCII PLY."""
    lines = path.read_text(errors="replace").splitlines()
    if not lines or lines[0].strip() != "ply" or "end_header" not in lines:
        raise SlamInputError("not an ASCII PLY point cloud", path)
    end = lines.index("end_header")
    header = lines[:end]
    if not any(line.startswith("format ascii") for line in header):
        raise SlamInputError("only ASCII PLY files are read", path)
    names = [line.split()[-1] for line in header if line.startswith("property")]
    rows = [line.split() for line in lines[end + 1 :] if line.strip()]
    if any(len(row) != len(names) for row in rows):
        raise SlamInputError(f"vertex rows must have {len(names)} values ({' '.join(names)})", path)
    try:
        data = np.array(rows, dtype=float).reshape(-1, len(names))
    except ValueError:
        raise SlamInputError("a vertex row is not numeric", path) from None
    try:
        xyz = data[:, [names.index(c) for c in ("x", "y", "z")]].astype(np.float32)
    except ValueError:
        raise SlamInputError("vertices need x, y and z properties", path) from None
    if all(c in names for c in ("red", "green", "blue")):
        rgb = data[:, [names.index(c) for c in ("red", "green", "blue")]].clip(0, 255).astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 180, np.uint8)
    return xyz, rgb


def _read_trajectory(path: Path) -> Trajectory:
    """A TUM file; one with no poses (nothing was tracked) is an empty trajectory, not an error."""
    body = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not body:
        return Trajectory(np.zeros(0), np.zeros((0, 4, 4)))
    return read_tum(path)


def _frames(folder: Path) -> int:
    try:
        return int(json.loads((folder / "run.json").read_text())["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
