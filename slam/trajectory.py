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
    q = q / np.max(np.abs(q), axis=1, keepdims=True)  # first to order 1: huge values would overflow the norm
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


def read_tum(path: str | Path, notes: list[str] | None = None) -> Trajectory:
    """Read a TUM trajectory file (timestamp tx ty tz qx qy qz qw); '#' lines are comments.

    A pose with a NaN or infinite value or a zero quaternion refuses the file. Given `notes` (ground truth,
    where gaps are normal), such poses and poses repeating a timestamp are dropped instead, with one note.
    """
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("trajectory file not found", path)
    data, lines = _numeric_rows(path, 8, "8 values (t tx ty tz qx qy qz qw)", separators=",")
    order = np.argsort(data[:, 0], kind="stable")
    data, lines = data[order], lines[order]
    bad = ~np.all(np.isfinite(data), axis=1)
    zero_quat = ~bad & (np.max(np.abs(data[:, 4:8]), axis=1) < 1e-6)
    if notes is None:
        if bad.any():
            raise SlamInputError(f"line {lines[bad].min()}: NaN or infinite value", path)
        if zero_quat.any():
            raise SlamInputError(f"line {lines[zero_quat].min()}: zero quaternion in trajectory file", path)
    else:
        bad |= zero_quat | _repeated(data[:, 0], ~(bad | zero_quat))
        _drop_note(notes, path, lines[bad], len(data), "a NaN, infinite value, zero quaternion or repeated timestamp")
        data = data[~bad]
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    poses[:, :3, :3] = quat_to_rot(data[:, 4:8])
    poses[:, :3, 3] = data[:, 1:4]
    return Trajectory(data[:, 0], poses)


def _numeric_rows(path: Path, count: int, expected: str, separators: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Rows of `count` numbers (blank and '#' lines skipped) and their line numbers; a malformed line refuses."""
    rows, lines = [], []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for sep in separators:
            line = line.replace(sep, " ")
        parts = line.split()
        if len(parts) != count:
            raise SlamInputError(f"line {lineno}: expected {expected}, got {len(parts)}", path)
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise SlamInputError(f"line {lineno}: not a number", path) from None
        lines.append(lineno)
    if not rows:
        raise SlamInputError("no poses in file", path)
    return np.array(rows), np.array(lines)


def _repeated(stamps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Valid entries (sorted by time) whose timestamp an earlier valid entry already has."""
    out = np.zeros(len(stamps), dtype=bool)
    idx = np.flatnonzero(valid)
    out[idx[1:]] = stamps[idx[1:]] == stamps[idx[:-1]]
    return out


def _drop_note(notes: list[str], path: Path, dropped: np.ndarray, total: int, why: str) -> None:
    """One note naming the file and the first lines dropped; nothing left is an error."""
    if len(dropped) == total:
        raise SlamInputError(f"no usable poses: every line has {why}", path)
    if len(dropped):
        shown = ", ".join(str(n) for n in sorted(dropped.tolist())[:5]) + (", ..." if len(dropped) > 5 else "")
        notes.append(f"{path}: {len(dropped)} of {total} poses dropped ({why}; "
                     f"line{'s' if len(dropped) > 1 else ''} {shown})")


def write_tum(path: str | Path, trajectory: Trajectory) -> None:
    """Write a TUM trajectory atomically (a crash never leaves half a file)."""
    q = rot_to_quat(trajectory.poses[:, :3, :3]) if len(trajectory) else np.zeros((0, 4))
    t = trajectory.poses[:, :3, 3] if len(trajectory) else np.zeros((0, 3))
    lines = [
        f"{ts:.6f} {p[0]:.9f} {p[1]:.9f} {p[2]:.9f} {r[0]:.9f} {r[1]:.9f} {r[2]:.9f} {r[3]:.9f}"
        for ts, p, r in zip(trajectory.timestamps, t, q)
    ]
    write_text_atomic(path, "# timestamp tx ty tz qx qy qz qw\n" + "\n".join(lines) + ("\n" if lines else ""))


def read_kitti_poses(path: str | Path, timestamps: np.ndarray | None = None,
                     notes: list[str] | None = None) -> Trajectory:
    """Read KITTI poses (12 values per line, the top 3x4 of T_wc, row-major).

    A NaN or infinite value refuses the file; given `notes`, that pose is dropped with one note instead.
    """
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("poses file not found", path)
    data, lines = _numeric_rows(path, 12, "12 values", separators="")
    if timestamps is None:
        timestamps = np.arange(len(data), dtype=float)
    elif len(timestamps) != len(data):
        raise SlamInputError(f"{len(data)} poses but {len(timestamps)} timestamps", path)
    timestamps = np.asarray(timestamps, dtype=float)
    bad = ~np.all(np.isfinite(data), axis=1)
    if notes is None and bad.any():
        raise SlamInputError(f"line {lines[bad].min()}: NaN or infinite value in poses", path)
    no_rotation = ~bad & ~_is_rotation(np.where(bad[:, None], 0.0, data).reshape(-1, 3, 4)[:, :, :3])
    if notes is None and no_rotation.any():
        raise SlamInputError(f"line {lines[no_rotation].min()}: the pose's 3x3 part is not a rotation", path)
    if notes is not None:
        _drop_note(notes, path, lines[bad], len(data), "a NaN or infinite value")
        _drop_note(notes, path, lines[no_rotation], len(data), "a 3x3 part that is not a rotation")
        keep = ~bad & ~no_rotation
        if not keep.any():
            raise SlamInputError("no usable poses (NaN or infinite values, or no rotation)", path)
        data, timestamps = data[keep], timestamps[keep]
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    poses[:, :3, :] = data.reshape(-1, 3, 4)
    return Trajectory(timestamps, poses)


def _is_rotation(R: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Orthonormal with determinant +1, up to the rounding of a text file."""
    if len(R) == 0:
        return np.zeros(0, bool)
    err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    return (err < tolerance) & (np.linalg.det(R) > 0)


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
