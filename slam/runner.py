"""`slam run`: a sequence through the system, with outputs written even when the run is stopped."""

from __future__ import annotations

import dataclasses
import gc
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from slam import map_io
from slam.config import Config, to_dict
from slam.errors import SlamInputError, SlamRuntimeError, describe
from slam.export import write_json, write_ply
from slam.io import FrameData, Sequence, open_sequence
from slam.memory import peak_rss_mb
from slam.pacing import Pacer
from slam.reporting import input_problems, report_input_problems, save_traceback, warn
from slam.system import System
from slam.tracking import TrackingState, TrackResult
from slam.trajectory import write_tum
from slam.viewer.session import check_viewer, open_viewer

ONLINE_TRAJECTORY = "trajectory_online.tum"  # every frame as tracked, through its reference keyframe's final pose
NOT_INITIALIZED_EXIT = 3  # the run ended without ever starting a map: nothing was tracked


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    exit_code: int = 0  # 0, 130 (SIGINT), 143 (SIGTERM), 1 (a thread failed), 3 (no map was ever started)
    error: str = ""
    evaluation: Any = None
    timings_ms: list[float] = field(default_factory=list)


class _StopSignals:
    """SIGINT / SIGTERM finish the current frame instead of killing the run (main thread only)."""

    def __init__(self):
        self.signal_number = 0
        self._previous = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.signal_number = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class RunObserver(Protocol):
    """Sees each frame after tracking (answering True stops the run) and adds its own keys to run.json."""

    def on_frame(self, frame: FrameData, result: TrackResult) -> bool: ...

    def summary(self) -> dict[str, Any]: ...


def run_sequence(config: Config, data: str | Path | Sequence, out_dir: str | Path, max_frames: int | None = None,
                 progress: bool = True, started_at: float | None = None, threaded: bool = True,
                 observer: RunObserver | None = None, load_map: str | Path | None = None,
                 localize: bool = False, save_map: str | Path | None = None) -> RunResult:
    """Run `data` (a path opened per config.dataset, or an opened Sequence such as a live capture).

    `load_map` starts from a saved map (slam.map_io): tracking relocalises in it, then mapping continues,
    or, with `localize`, the map stays fixed (no mapping, no loop closing). `save_map` writes the final map.
    """
    started_at = time.perf_counter() if started_at is None else started_at
    out_dir = Path(out_dir)
    check_viewer(config.viewer)  # a viewer that cannot work here is refused before anything starts
    sequence = data if isinstance(data, Sequence) else open_sequence(data, config)
    report_input_problems(sequence)
    out_dir.mkdir(parents=True, exist_ok=True)
    initial_map = None
    if load_map is not None:
        initial_map = map_io.load_map(load_map, sequence.camera, config.mode,
                                      recycle=config.mapping.max_keyframes > 0)
        if localize:
            config = dataclasses.replace(
                config, mapping=dataclasses.replace(config.mapping, enabled=False),
                loop_closing=dataclasses.replace(config.loop_closing, enabled=False))
    elif localize:
        raise SlamInputError("--localize needs a map to localise in (--load-map FILE)")
    system = System(config, sequence.camera, threaded=threaded, initial_map=initial_map, localize_only=localize)
    if system.place_recognition_off:
        warn(system.place_recognition_off)
    system.warm_up()  # compile (or load cached) numba kernels before timing starts
    system.start()
    startup_s = time.perf_counter() - started_at
    timings: list[float] = []
    states: list[str] = []
    first_read = last_pose = None
    exit_code, error = 0, ""
    failure: BaseException | None = None  # an internal failure, whose traceback is saved beside the outputs
    total = _frame_limit(sequence, max_frames)
    # BLAS on one thread: OpenBLAS's workers spin after each call, and on 2 cores they took the CPU from tracking
    # while the loop thread's whole-map BA factorised its pose system (threaded 1000-frame synthetic RGB-D, 4
    # alternating runs: that BA 1.7-2.3 s -> 1.2-1.3 s, frames tracked meanwhile 20-26 -> 14-15 ms at the median).
    # Our own threads are the parallelism.
    with _StopSignals() as stop, threadpool_limits(limits=1, user_api="blas"):
        viewer = open_viewer(config, sequence, system, out_dir, stopping=lambda: stop.signal_number != 0)
        frames = sequence.frames(total)
        # The ~180k objects of the libraries loaded so far (numba's and LLVM's among them) do not become garbage
        # during the run: out of the collector's sight, a full collection no longer walks them. Before, a threaded
        # teddy RGB-D run had full collections every 3 s or so taking 70-230 ms each, the whole process stopped
        # (the GIL held); now none during the run. Frozen once the viewer is open, just before the block whose
        # shutdown gives them back: a viewer that fails to open no longer leaves a caller's collector frozen.
        gc.collect()
        gc.freeze()
        try:
            bar = _progress(total, progress)
            first_read = time.perf_counter()
            pace = Pacer(config.dataset.realtime)
            for data_frame in frames:
                pace.wait(data_frame.timestamp)
                t0 = time.perf_counter()
                result = system.process(data_frame)
                last_pose = time.perf_counter()
                timings.append((last_pose - t0) * 1000.0)
                states.append(result.state.value)
                if observer is not None and observer.on_frame(data_frame, result):
                    break
                if viewer.on_frame(data_frame, result):  # the viewer's quit key: stop here, exit status 0
                    break
                pace.shift(viewer.take_paused_s())
                bar.update(1)
                bar.set_postfix_str(f"{result.state.value} inl={result.n_inliers} kf={len(system.map.keyframes)}",
                                    refresh=False)
                if stop.signal_number:
                    break
            bar.close()
        except SlamRuntimeError as exc:
            exit_code, error, failure = 1, str(exc), exc
        except SlamInputError as exc:  # the sequence is unusable from here on: stop, but keep what was tracked
            exit_code, error = 2, str(exc)
        except Exception as exc:  # noqa: BLE001 - a failure in tracking must not lose the work done so far
            exit_code, error, failure = 1, f"tracking failed: {describe(exc)}", exc
        finally:
            frames.close()
        try:
            system.shutdown(finish_mapping=exit_code == 0 and not stop.signal_number)
        except SlamRuntimeError as exc:
            exit_code, error, failure = 1, error or str(exc), failure or exc
        finally:
            gc.unfreeze()  # the real-time part is over (and a caller's process gets its collector back)
        if stop.signal_number:
            exit_code = 128 + stop.signal_number
            error = error or f"stopped by signal {signal.Signals(stop.signal_number).name}; outputs written"
        elif exit_code == 0 and states and all(s == TrackingState.NOT_INITIALIZED.value for s in states):
            exit_code = NOT_INITIALIZED_EXIT
            error = f"no map was started in {len(states)} frames; the last frame had {system.tracker.init_failure}"
    wall = (last_pose - first_read) if first_read is not None and last_pose is not None else float("nan")
    summary = _summary(config, sequence, system, states, timings, wall, startup_s)
    # The whole run from the first frame read to mapping finished (final BA included), outputs not yet written.
    summary["run_wall_s"] = time.perf_counter() - first_read if first_read is not None else float("nan")
    summary.update(input_problems(sequence), **({"error": error} if error else {}))
    if failure is not None:
        error += f" (traceback in {save_traceback(out_dir, failure)})"
    if observer is not None:
        summary.update(observer.summary())
    summary.update(viewer.summary())  # ends the viewer (recording: its overview image)
    evaluation = _write_outputs(out_dir, config, sequence, system, summary)
    if save_map is not None:
        map_io.save_map(save_map, system.map, sequence.camera, config.mode)
    return RunResult(out_dir, summary, exit_code, error, evaluation, timings)


def _frame_limit(sequence: Sequence, max_frames: int | None) -> int | None:
    """Frames to read: a recording's length (capped by max_frames); a live stream (no length) max_frames or all."""
    if getattr(sequence, "unbounded", False):
        return max_frames
    return len(sequence) if max_frames is None else min(max_frames, len(sequence))


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled, dynamic_ncols=True, leave=False)


def _summary(config: Config, sequence, system: System, states: list[str], timings: list[float], wall: float,
             startup_s: float) -> dict[str, Any]:
    tracked = sum(s == TrackingState.OK.value for s in states)
    t = np.array(timings) if timings else np.array([np.nan])
    frames = len(states)
    return {
        "mode": config.mode,
        "sequence": sequence.name,
        "frames": frames,
        "tracked_frames": tracked,
        "lost_frames": sum(s == TrackingState.LOST.value for s in states),
        "initialized_frame": system.tracker.initialized_frame,  # index of the frame the map started at
        "keyframes": int(len(system.map.alive_keyframe_ids())),
        "map_points": int(len(system.map.alive_point_ids())),
        "tracking_ms_p50": float(np.percentile(t, 50)),
        "tracking_ms_p95": float(np.percentile(t, 95)),
        "fps": float(frames / wall) if wall and wall > 0 else float("nan"),
        "startup_s": float(startup_s),
        "peak_rss_mb": peak_rss_mb(),  # VmHWM: ru_maxrss would include a large parent process's peak
        "local_ba_ms_mean": float(np.mean(system.mapper.stats.ba_ms)) if system.mapper.stats.ba_ms else None,
        "keyframes_culled": system.mapper.stats.keyframes_culled,
        "loops": _loops(system),
        "loop_closing": _loop_closing_state(config, system),
    }


def _loop_closing_state(config: Config, system: System) -> str:
    """run.json: whether loop closing ran, and why not where it did not."""
    if system.loop_closer is not None:
        return "on"
    if system.place_recognition_off:
        return f"off: {system.place_recognition_off}"
    if not config.loop_closing.enabled:
        return "off: loop_closing.enabled is false"
    if config.mode == "mono" and not config.loop_closing.monocular:
        return "off: loop_closing.monocular is false"
    return "off"


def _loops(system: System) -> list[dict[str, Any]]:
    """The loops closed: keyframe ids, the timestamps they were taken at, matches, scale correction, time."""
    if system.loop_closer is None:
        return []
    out = []
    for loop in system.loop_closer.stats.loops:
        times = [system.map.keyframes[k].timestamp for k in (loop.keyframe, loop.loop_keyframe)]
        out.append({"keyframe": loop.keyframe, "loop_keyframe": loop.loop_keyframe, "timestamps": times,
                    "matches": loop.matches, "scale": round(loop.scale, 4),
                    "correction_ms": round(loop.correction_ms, 1), "global_ba_ms": round(loop.global_ba_ms, 1)})
    return out


def _write_outputs(out_dir: Path, config: Config, sequence, system: System, summary: dict[str, Any]):
    # Two trajectories: the online one (each frame's pose as tracking placed it against its reference keyframe,
    # composed with that keyframe's final pose: what ORB-SLAM3 writes) and, with final_pose_refinement, each
    # frame re-fitted to the finished map. Both are scored; trajectory.tum is the refined one.
    online = system.trajectory(refine=False)
    refine = config.tracking.final_pose_refinement
    trajectory = system.trajectory(refine=True) if refine else online
    write_tum(out_dir / "trajectory.tum", trajectory)
    write_tum(out_dir / ONLINE_TRAJECTORY, online)
    write_tum(out_dir / "keyframes.tum", system.keyframe_trajectory())
    xyz, rgb = system.map_points()
    write_ply(out_dir / "map.ply", xyz, rgb)
    evaluation = None
    if sequence.groundtruth is not None and len(trajectory) >= 3:
        from slam.evaluation import evaluate, write_report

        align = "sim3" if config.mode == "mono" else "se3"
        try:
            evaluation = evaluate(sequence.groundtruth, trajectory, align=align)
        except SlamInputError as exc:
            summary["evaluation_error"] = str(exc)
        else:
            write_report(evaluation, out_dir, title=f"{sequence.name} ({config.mode})")
            summary.update(ate_rmse_m=evaluation.ate_rmse_m, rpe_trans_m=evaluation.rpe_trans_rmse_m,
                           rpe_rot_deg=evaluation.rpe_rot_rmse_deg, ate_align=align, ate_scale=evaluation.scale,
                           ate_matched=evaluation.matched)
            online_evaluation = evaluate(sequence.groundtruth, online, align=align) if refine else evaluation
            summary.update(ate_online_rmse_m=online_evaluation.ate_rmse_m,
                           rpe_online_trans_m=online_evaluation.rpe_trans_rmse_m,
                           ate_online_scale=online_evaluation.scale)
    summary["config"] = to_dict(config)
    write_json(out_dir / "run.json", summary)
    return evaluation
