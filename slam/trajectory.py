"""Trajectories as arrays: timestamps (N,) and camera-to-world poses T_wc (N,4,4); TUM and KITTI files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slam.errors import SlamInputError


@dataclass
class Trajectory:
    timestamps: np.ndarray  # (N,) seconds
    poses: np.ndarray  # (N,4,4) T_wc, camera-to-world

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def positions(self) -> np.ndarray:
        return self.poses[:, :3, 3]


def quat_to_rot(q: np.ndarray) -> np.ndarray:
    """Quaternions (N,4) as (qx, qy, qz, qw) to rotation matrices (N,3,3)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    x, y, z, w = q.T
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=1,
    ).reshape(-1, 3, 3)


def rot_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (N,3,3) to quaternions (N,4) as (qx, qy, qz, qw), qw >= 0."""
    R = np.asarray(R, dtype=float).reshape(-1, 3, 3)
    # Largest-diagonal method, vectorised (Shepperd): numerically safe for all rotations.
    m = R
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cands = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    pick = np.argmax(cands, axis=1)
    q = np.empty((len(R), 4))
    for case in range(4):
        sel = pick == case
        if not np.any(sel):
            continue
        r = m[sel]
        if case == 0:
            s = np.sqrt(1.0 + tr[sel]) * 2
            q[sel] = np.stack([(r[:, 2, 1] - r[:, 1, 2]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s,
                               (r[:, 1, 0] - r[:, 0, 1]) / s, 0.25 * s], axis=1)
        elif case == 1:
            s = np.sqrt(1.0 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2]) * 2
            q[sel] = np.stack([0.25 * s, (r[:, 0, 1] + r[:, 1, 0]) / s,
                               (r[:, 0, 2] + r[:, 2, 0]) / s, (r[:, 2, 1] - r[:, 1, 2]) / s], axis=1)
        elif case == 2:
            s = np.sqrt(1.0 + r[:, 1, 1] - r[:, 0, 0] - r[:, 2, 2]) * 2
            q[sel] = np.stack([(r[:, 0, 1] + r[:, 1, 0]) / s, 0.25 * s,
                               (r[:, 1, 2] + r[:, 2, 1]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s], axis=1)
        else:
            s = np.sqrt(1.0 + r[:, 2, 2] - r[:, 0, 0] - r[:, 1, 1]) * 2
            q[sel] = np.stack([(r[:, 0, 2] + r[:, 2, 0]) / s, (r[:, 1, 2] + r[:, 2, 1]) / s,
                               0.25 * s, (r[:, 1, 0] - r[:, 0, 1]) / s], axis=1)
    q[q[:, 3] < 0] *= -1
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def read_tum(path: str | Path) -> Trajectory:
    """Read a TUM trajectory file (timestamp tx ty tz qx qy qz qw); '#' lines are comments."""
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("trajectory file not found", path)
    rows = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 8:
            raise SlamInputError(f"line {lineno}: expected 8 values (t tx ty tz qx qy qz qw), got {len(parts)}", path)
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise SlamInputError(f"line {lineno}: not a number", path) from None
        if not np.all(np.isfinite(values)):
            raise SlamInputError(f"line {lineno}: NaN or infinite value", path)
        rows.append(values)
    if not rows:
        raise SlamInputError("no poses in trajectory file", path)
    data = np.array(rows)
    order = np.argsort(data[:, 0], kind="stable")
    data = data[order]
    quat_norm = np.linalg.norm(data[:, 4:8], axis=1)
    if np.any(quat_norm < 1e-6):
        raise SlamInputError("zero quaternion in trajectory file", path)
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    poses[:, :3, :3] = quat_to_rot(data[:, 4:8])
    poses[:, :3, 3] = data[:, 1:4]
    return Trajectory(data[:, 0], poses)


def write_tum(path: str | Path, trajectory: Trajectory) -> None:
    """Write a TUM trajectory atomically (a crash never leaves half a file)."""
    q = rot_to_quat(trajectory.poses[:, :3, :3]) if len(trajectory) else np.zeros((0, 4))
    t = trajectory.poses[:, :3, 3] if len(trajectory) else np.zeros((0, 3))
    lines = [
        f"{ts:.6f} {p[0]:.9f} {p[1]:.9f} {p[2]:.9f} {r[0]:.9f} {r[1]:.9f} {r[2]:.9f} {r[3]:.9f}"
        for ts, p, r in zip(trajectory.timestamps, t, q)
    ]
    write_text_atomic(path, "# timestamp tx ty tz qx qy qz qw\n" + "\n".join(lines) + ("\n" if lines else ""))


def read_kitti_poses(path: str | Path, timestamps: np.ndarray | None = None) -> Trajectory:
    """Read KITTI poses (12 values per line, the top 3x4 of T_wc, row-major)."""
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("poses file not found", path)
    rows = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 12:
            raise SlamInputError(f"line {lineno}: expected 12 values, got {len(parts)}", path)
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise SlamInputError(f"line {lineno}: not a number", path) from None
    if not rows:
        raise SlamInputError("no poses in file", path)
    data = np.array(rows)
    if not np.all(np.isfinite(data)):
        raise SlamInputError("NaN or infinite value in poses", path)
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    poses[:, :3, :] = data.reshape(-1, 3, 4)
    if timestamps is None:
        timestamps = np.arange(len(data), dtype=float)
    elif len(timestamps) != len(data):
        raise SlamInputError(f"{len(data)} poses but {len(timestamps)} timestamps", path)
    return Trajectory(np.asarray(timestamps, dtype=float), poses)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
