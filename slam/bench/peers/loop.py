"""Drive a frame-to-frame peer over a sequence: chain its motions, time each frame, evaluate like `slam run`."""

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


def run_peer(
    name: str, config: Config, data: str | Path, out_dir: Path, max_frames: int | None, started_at: float
) -> tuple[int, list[float]]:
    """Run peer `name` over `data`; write trajectory.tum and run.json into out_dir; (exit status, ms per frame)."""
    from slam.bench.peers import PEERS

    sequence = open_sequence(data, config)
    estimator = importlib.import_module(PEERS[name].module).make_estimator(config, sequence.camera, config.mode)
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
    summary = _summary(name, config, sequence.name, chain, wall, startup_s)
    trajectory = chain.trajectory()
    write_tum(out_dir / "trajectory.tum", trajectory)
    summary.update(_evaluate(sequence.groundtruth, trajectory, config.mode))
    summary["config"] = to_dict(config)
    write_json(out_dir / "run.json", summary)
    return 0, chain.timings


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


def _summary(name: str, config: Config, sequence: str, chain: _Chain, wall: float, startup_s: float) -> dict[str, Any]:
    frames = len(chain.timestamps)
    t = np.array(chain.timings) if chain.timings else np.array([np.nan])
    return {
        "mode": config.mode,
        "sequence": sequence,
        "peer": name,
        "frames": frames,
        "tracked_frames": chain.tracked,
        "lost_frames": frames - chain.tracked,
        "initialized_frame": 0 if frames else None,
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
        "rpe_trans_m": result.rpe_trans_rmse_m,
        "rpe_rot_deg": result.rpe_rot_rmse_deg,
        "ate_align": align,
        "ate_scale": result.scale,
        "ate_matched": result.matched,
    }
