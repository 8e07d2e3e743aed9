"""Drive a peer over a sequence, time each frame, evaluate like `slam run`.

Two kinds of peer: a frame-to-frame motion estimator (`MotionEstimator`, from the module's `make_estimator`),
whose motions are chained here, and a whole SLAM system (`SlamSystem`, from the module's `make_system`),
which is fed every frame and gives its own final trajectory at the end.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from slam.config import Config, to_dict
from slam.errors import SlamInputError
from slam.export import write_json
from slam.io import FrameData, open_sequence
from slam.memory import peak_rss_mb
from slam.pacing import Pacer
from slam.trajectory import Trajectory, write_tum


class MotionEstimator(Protocol):
    def step(self, frame: FrameData) -> np.ndarray | None:
        """The motion T_prev_cur (4x4: current camera to previous camera) from the previous frame given to
        `step`, identity for the first frame, None when it cannot be estimated."""
        ...


class SlamSystem(Protocol):
    """A whole SLAM system (its own tracking, mapping and loop closing), fed one frame at a time."""

    def track(self, frame: FrameData) -> tuple[bool, float]:
        """Process one frame: (tracked, milliseconds of its tracking call as the system measured it)."""
        ...

    def finish(self) -> tuple[Trajectory, dict[str, Any]]:
        """After the last frame: the final trajectory (every frame it localised) and extra run.json fields,
        which replace the loop's own (e.g. peak_rss_mb of the process where the system ran)."""
        ...

    def close(self) -> None:
        """Release what the system holds (called after finish, and when a run stops early)."""
        ...


def run_peer(
    name: str, config: Config, data: str | Path, out_dir: Path, max_frames: int | None, started_at: float
) -> tuple[int, list[float]]:
    """Run peer `name` over `data`; write trajectory.tum and run.json into out_dir; (exit status, ms per frame)."""
    from slam.bench.peers import PEERS

    sequence = open_sequence(data, config)
    module = importlib.import_module(PEERS[name].module)
    if hasattr(module, "make_system"):
        system = module.make_system(config, sequence, out_dir)
        try:
            return _run_system(name, system, config, sequence, out_dir, max_frames, started_at)
        finally:
            system.close()
    estimator = module.make_estimator(config, sequence.camera, config.mode)
    startup_s = time.perf_counter() - started_at
    chain = _Chain()
    first = last = None
    pace = Pacer(config.dataset.realtime)
    for frame in sequence.frames(max_frames):
        pace.wait(frame.timestamp)
        t0 = time.perf_counter()
        chain.add(frame.timestamp, estimator.step(frame))
        last = time.perf_counter()
        chain.timings.append((last - t0) * 1000.0)
        first = t0 if first is None else first
    wall = (last - first) if first is not None else float("nan")
    frames = len(chain.timestamps)
    summary = _summary(name, config, sequence.name, frames, chain.tracked, chain.timings, wall, startup_s)
    summary["initialized_frame"] = 0 if chain.timestamps else None
    _write(summary, chain.trajectory(), sequence.groundtruth, config, out_dir)
    return 0, chain.timings


def _run_system(
    name: str,
    system: SlamSystem,
    config: Config,
    sequence: Any,
    out_dir: Path,
    max_frames: int | None,
    started_at: float,
) -> tuple[int, list[float]]:
    """Feed every frame to a whole-system peer at the recorded rate; its own trajectory is scored."""
    startup_s = time.perf_counter() - started_at
    timings: list[float] = []
    tracked, initialized = 0, None
    first = last = None
    pace = Pacer(config.dataset.realtime)
    for i, frame in enumerate(sequence.frames(max_frames)):
        pace.wait(frame.timestamp)
        t0 = time.perf_counter()
        ok, ms = system.track(frame)
        last = time.perf_counter()
        first = t0 if first is None else first
        timings.append(ms)
        tracked += bool(ok)
        initialized = i if ok and initialized is None else initialized
    wall = (last - first) if first is not None else float("nan")
    trajectory, extra = system.finish()
    summary = _summary(name, config, sequence.name, len(timings), tracked, timings, wall, startup_s)
    summary["run_wall_s"] = time.perf_counter() - first if first is not None else float("nan")  # shutdown too
    summary["initialized_frame"] = initialized
    summary["poses"] = len(trajectory)
    summary.update(extra)
    _write(summary, trajectory, sequence.groundtruth, config, out_dir)
    return 0, timings


def _write(summary: dict[str, Any], trajectory: Trajectory, groundtruth, config: Config, out_dir: Path) -> None:
    write_tum(out_dir / "trajectory.tum", trajectory)
    summary.update(_evaluate(groundtruth, trajectory, config.mode))
    summary["config"] = to_dict(config)
    write_json(out_dir / "run.json", summary)


class _Chain:
    """Poses T_wc chained from frame-to-frame motions; a failed frame keeps the last motion (constant velocity)."""

    def __init__(self):
        self.timestamps: list[float] = []
        self.poses: list[np.ndarray] = []
        self.timings: list[float] = []
        self.tracked = 0
        self._motion = np.eye(4)

    def add(self, timestamp: float, motion: np.ndarray | None) -> None:
        if motion is not None:
            self.tracked += 1
            self._motion = motion
        pose = np.eye(4) if not self.poses else self.poses[-1] @ self._motion
        self.timestamps.append(timestamp)
        self.poses.append(pose)

    def trajectory(self) -> Trajectory:
        poses = np.stack(self.poses) if self.poses else np.zeros((0, 4, 4))
        return Trajectory(np.asarray(self.timestamps, dtype=float), poses)


def _summary(
    name: str,
    config: Config,
    sequence: str,
    frames: int,
    tracked: int,
    timings: list[float],
    wall: float,
    startup_s: float,
) -> dict[str, Any]:
    t = np.array(timings) if timings else np.array([np.nan])
    return {
        "mode": config.mode,
        "sequence": sequence,
        "peer": name,
        "frames": frames,
        "tracked_frames": tracked,
        "lost_frames": frames - tracked,
        "initialized_frame": None,
        "tracking_ms_p50": float(np.percentile(t, 50)),
        "tracking_ms_p95": float(np.percentile(t, 95)),
        "fps": float(frames / wall) if wall > 0 else float("nan"),
        "startup_s": float(startup_s),
        "peak_rss_mb": peak_rss_mb(),
        "local_ba_ms_mean": None,
    }


def _evaluate(groundtruth: Trajectory | None, trajectory: Trajectory, mode: str) -> dict[str, Any]:
    """The same evaluation and alignment as slam.runner: SE(3) for rgbd / stereo, Sim(3) for mono."""
    if groundtruth is None or len(trajectory) < 3:
        return {}
    from slam.evaluation import evaluate

    align = "sim3" if mode == "mono" else "se3"
    try:
        result = evaluate(groundtruth, trajectory, align=align)
    except SlamInputError as exc:
        return {"evaluation_error": str(exc)}
    return {
        "ate_rmse_m": result.ate_rmse_m,
        "ate_online_rmse_m": result.ate_rmse_m,  # a peer's trajectory is as it tracked: no re-fit afterwards
        "rpe_trans_m": result.rpe_trans_rmse_m,
        "rpe_rot_deg": result.rpe_rot_rmse_deg,
        "ate_align": align,
        "ate_scale": result.scale,
        "ate_matched": result.matched,
    }
