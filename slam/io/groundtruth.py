"""Ground truth for any supported input: a TUM folder, a KITTI sequence, a EuRoC folder, or a trajectory file.

Poses are those of the camera whose images the readers deliver (EuRoC: cam0, unrectified; the stereo
reader's own ground truth additionally applies the rectification rotation).
"""

from __future__ import annotations

from pathlib import Path

from slam.errors import SlamInputError
from slam.io import euroc, kitti
from slam.trajectory import Trajectory, read_kitti_poses, read_tum


def load_groundtruth(path: str | Path, notes: list[str] | None = None) -> Trajectory:
    """Find and read the ground truth at `path` (a folder or a file); a one-line error when there is none.

    With `notes`, poses with NaNs are dropped (and noted there) instead of refusing the file.
    """
    path = Path(path)
    if path.is_file():
        return _read_trajectory_file(path, notes)
    if not path.is_dir():
        raise SlamInputError("no such file or folder", path)
    if (path / "groundtruth.txt").is_file():
        return read_tum(path / "groundtruth.txt", notes)
    if (path / "mav0").is_dir() or path.name == "mav0":
        trajectory = euroc.camera_groundtruth(path, notes=notes)
        if trajectory is None:
            raise SlamInputError(
                f"EuRoC folder without ground truth (no mav0/{euroc.STATE_GT_CSV} or {euroc.BODY_GT_TUM})", path
            )
        return trajectory
    if (path / "times.txt").is_file():
        trajectory = kitti.read_groundtruth(path, notes=notes)
        if trajectory is None:
            raise SlamInputError(f"KITTI sequence without ground truth ({kitti.poses_path(path)} not found)", path)
        return trajectory
    raise SlamInputError("no ground truth found (expected groundtruth.txt, mav0/ or a KITTI sequence)", path)


def _read_trajectory_file(path: Path, notes: list[str] | None) -> Trajectory:
    """A TUM file (8 columns) or KITTI poses (12 columns; timed by sequences/NN/times.txt beside poses/)."""
    columns = _first_row_columns(path)
    if columns == 8:
        return read_tum(path, notes)
    if columns == 12:
        times_path = path.parent.parent / "sequences" / path.stem / "times.txt"
        times = kitti.read_times(times_path) if times_path.is_file() else None
        return read_kitti_poses(path, times, notes)
    raise SlamInputError(f"not a trajectory: {columns} values per line (TUM has 8, KITTI 12)", path)


def _first_row_columns(path: Path) -> int:
    with path.open(errors="replace") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return len(line.replace(",", " ").split())
    raise SlamInputError("empty trajectory file", path)
