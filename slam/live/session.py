"""`slam live`: SLAM on a camera, stream or video played as a camera, through the same runner as `slam run`."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slam.config import Config
from slam.errors import SlamInputError
from slam.io.calibration import read_calibration
from slam.live.capture import CaptureSource, FrameCapture
from slam.live.feed import LiveFeed, fit_calibration, live_sequence
from slam.live.monitor import LiveMonitor
from slam.live.recorder import Recorder
from slam.runner import RunResult, run_sequence


@dataclass(frozen=True)
class LiveOptions:
    source: CaptureSource
    calibration: Path  # the YAML `slam calibrate` writes (slam/io/calibration.py's format)
    out_dir: Path
    record_dir: Path | None = None
    max_frames: int | None = None
    fps: float | None = None  # play a video file at this rate instead of its own
    save_map: Path | None = None  # where the final map goes (slam/map_io.py)
    log_every_s: float = 2.0


def run_live(
    config: Config, options: LiveOptions, started_at: float | None = None, log: Callable[[str], None] | None = None
) -> RunResult:
    """Run until the source ends, `max_frames`, the viewer's `q` or Ctrl-C; outputs are written in every case."""
    log = log or _log_stderr
    if config.mode != "mono":
        raise SlamInputError(
            f"a live source gives only images: slam live needs mode mono, got '{config.mode}'", "config"
        )
    # The source paces itself: the runner's pacing by timestamps could only add latency.
    config = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, realtime=False))
    calibration = read_calibration(options.calibration)
    capture = FrameCapture(options.source, fps=options.fps)
    feed = None
    try:
        calibration = fit_calibration(calibration, capture)
        recorder = Recorder(options.record_dir, calibration, options.source.name) if options.record_dir else None
        feed = LiveFeed(capture, calibration, recorder)
        monitor = LiveMonitor(feed, log, options.log_every_s)
        log(
            f"live: {options.source.name}, {capture.width}x{capture.height}"
            + (f", recording to {options.record_dir}" if recorder else "")
        )
        return run_sequence(
            config,
            live_sequence(feed),
            options.out_dir,
            max_frames=options.max_frames,
            progress=False,
            started_at=started_at,
            observer=monitor,
            save_map=options.save_map,
        )
    finally:
        (feed or capture).close()  # normally closed already when the run's iteration ended


def _log_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
