"""The viewer process as the runner sees it: started with the run, fed snapshots, read for keys, finished.

The runner calls `on_frame` after each tracked frame (True asks the run to stop: the viewer's quit key) and
`summary` once the system has shut down. A viewer process that ends early (window closed, crash) is noticed
at the next frame and never fed again, so the run goes on at full speed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import sys
import time
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slam.config import Config, ViewerConfig
from slam.errors import SlamInputError
from slam.viewer import live, record
from slam.viewer.channel import make_queue, put_latest
from slam.viewer.publisher import SnapshotPublisher

# The function each mode runs in its own process (spawned: a fork would copy the tracking process's threads).
TARGETS: dict[str, Callable] = {"live": live.run_process, "record": record.run_process}
QUEUE_SIZE = {"live": 2, "record": 16}  # recording keeps more in flight so fewer frames are dropped
FINISH_TIMEOUT_S = 120.0  # the recorder's last frames and overview
_HOLD_POLL_S = 0.05


@dataclass(frozen=True)
class ViewerSettings:
    """What the viewer process needs (picklable)."""

    mode: str
    out_dir: str
    record_every: int


@dataclass
class Controls:
    """Keys the viewer process reports: quit (ends the run) and pause (holds it)."""

    quit: Any  # multiprocessing Event
    pause: Any


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def check_viewer(config: ViewerConfig) -> None:
    """Refuse a viewer that cannot work here before the run starts (one line)."""
    if config.record_every < 1:
        raise SlamInputError(f"config key 'viewer.record_every' must be at least 1, got {config.record_every}")
    if config.interval_ms < 0:
        raise SlamInputError(f"config key 'viewer.interval_ms' must not be negative, got {config.interval_ms}")
    problem = window_problem() if config.mode == "live" else None
    if problem:
        raise SlamInputError(f"viewer mode 'live' {problem}: use --viewer record to render images instead")


def window_problem() -> str | None:
    """Why no viewer window can open here (None: it can)."""
    if importlib.util.find_spec("open3d") is None:
        return "needs open3d (pip install -e '.[viewer]')"
    if not has_display():
        return "needs a display (DISPLAY / WAYLAND_DISPLAY is not set)"
    return None


def open_viewer(
    config: Config, sequence, system, out_dir: str | Path, stopping: Callable[[], bool] = lambda: False
) -> ViewerSession | NullViewer:
    viewer = config.viewer
    check_viewer(viewer)
    if viewer.mode == "none":
        return NullViewer()
    publisher = SnapshotPublisher(
        system,
        sequence.camera,
        getattr(sequence, "groundtruth", None),
        interval_s=viewer.interval_ms / 1000.0,
        every_frames=viewer.record_every if viewer.mode == "record" else 0,
    )
    settings = ViewerSettings(viewer.mode, str(Path(out_dir)), viewer.record_every)
    return ViewerSession(settings, publisher, stopping)


class NullViewer:
    """viewer.mode none: the same calls, doing nothing."""

    def on_frame(self, data, result) -> bool:
        return False

    def take_paused_s(self) -> float:
        return 0.0

    def summary(self) -> dict[str, Any]:
        return {}


class ViewerSession:
    def __init__(self, settings: ViewerSettings, publisher: SnapshotPublisher, stopping: Callable[[], bool]):
        self.settings = settings
        self.publisher = publisher
        self.stopping = stopping
        if settings.mode == "record":
            record.clear_outputs(Path(settings.out_dir))
        context = multiprocessing.get_context("spawn")
        self.queue = make_queue(context, QUEUE_SIZE[settings.mode])
        self.controls = Controls(context.Event(), context.Event())
        self.process = context.Process(
            target=TARGETS[settings.mode],
            args=(self.queue, self.controls, settings),
            name=f"slam-viewer-{settings.mode}",
            daemon=settings.mode == "record",
        )
        with _main_module_hidden():
            self.process.start()
        self._finalizer = weakref.finalize(self, _end_process, self.process)
        self.sent = self.dropped = 0
        self.ended_at_frame: int | None = None
        self.paused_s = self._paused_pending = 0.0
        self.cost_ms: list[float] = []
        self.error = ""

    # ---- every frame, in the tracking thread --------------------------------------------------------------
    def on_frame(self, data, result) -> bool:
        """Feed the viewer when a snapshot is due; hold while it is paused; True when it asked to quit."""
        t0 = time.perf_counter()
        try:
            self.publisher.observe(data, result)
            if self.alive() and self.publisher.due():
                self.dropped += put_latest(self.queue, self.publisher.build())
                self.sent += 1
        except Exception as exc:  # noqa: BLE001 - a viewer problem must never end the run
            self._give_up(exc)
        self.cost_ms.append((time.perf_counter() - t0) * 1000.0)
        self._hold()
        return self.controls.quit.is_set()

    def alive(self) -> bool:
        if self.ended_at_frame is None and not self.process.is_alive():
            self.ended_at_frame = self.publisher.n_frames
        return self.ended_at_frame is None

    def _hold(self) -> None:
        if not self.controls.pause.is_set():
            return
        t0 = time.perf_counter()
        while self.controls.pause.is_set() and not self.controls.quit.is_set() and self.alive() and not self.stopping():
            time.sleep(_HOLD_POLL_S)
        self._paused_pending += time.perf_counter() - t0
        self.publisher.restart_rate()  # the frame rate shown after a pause is not averaged over it

    def take_paused_s(self) -> float:
        """Seconds held by the pause key since the last call (the runner's pacing skips them)."""
        held, self._paused_pending = self._paused_pending, 0.0
        self.paused_s += held
        return held

    # ---- once, after the system has shut down ------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """End the viewer (recording: render the overview) and report; never raises, so outputs get written."""
        overview = None
        try:
            overview = self._finish(self.publisher.final())
        except Exception as exc:  # noqa: BLE001 - the run's own outputs come next and must not be lost
            self._give_up(exc)
        cost = np.array(self.cost_ms) if self.cost_ms else np.array([np.nan])
        info = {
            "mode": self.settings.mode,
            "snapshots_sent": self.sent,
            "snapshots_dropped": self.dropped,
            "ended_early": self.ended_at_frame is not None and not self.controls.quit.is_set(),
            "ended_at_frame": self.ended_at_frame,
            "quit": self.controls.quit.is_set(),
            "paused_s": self.paused_s + self._paused_pending,
            "tracking_thread_ms_p50": float(np.percentile(cost, 50)),
            "tracking_thread_ms_max": float(np.max(cost)),
        }
        if self.settings.mode == "record":
            info.update(frames_written=record.count_frames(Path(self.settings.out_dir)), overview=overview)
        if self.error:
            info["error"] = self.error
        return {"viewer": info}

    def _give_up(self, exc: Exception) -> None:
        self.error = self.error or f"{type(exc).__name__}: {exc}"
        _end_process(self.process)

    def _finish(self, final) -> str | None:
        if self.settings.mode == "record":
            return self._finish_recording(final)
        if self.alive() and not self.stopping() and not self.controls.quit.is_set():
            put_latest(self.queue, final)
            self._finalizer.detach()  # the window stays open on the final map until the user closes it
        else:
            _end_process(self.process)
        return None

    def _finish_recording(self, final) -> str:
        """The recorder renders its last frames and the overview; if it is gone, the overview is drawn here
        with the numpy renderer (open3d may be what brought the recorder down)."""
        if self.alive():
            put_latest(self.queue, final)
            self.process.join(timeout=FINISH_TIMEOUT_S)
        _end_process(self.process)
        path = Path(self.settings.out_dir) / record.OVERVIEW
        if self.process.exitcode != 0 or not path.is_file():
            record.write_overview(final, path, renderer="raster")
        return str(path)


@contextlib.contextmanager
def _main_module_hidden():
    """A spawned process re-runs the caller's main script unless it is guarded by `if __name__ == "__main__"`;
    the viewer needs nothing from it, so it is hidden while the process starts (as for an interactive session)."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _end_process(process) -> None:
    if process.is_alive():
        process.terminate()
        process.join(timeout=5.0)
