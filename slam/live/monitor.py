"""What a live run reports while it runs (fps, latency, dropped frames, tracking state) and in run.json.

Latency is from a frame's arrival from the source (decoded) to the end of its tracking.

The runner calls `on_frame` after tracking each frame; its answer asks the run to stop (the viewer's `q`
sets `stop_requested`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from slam.io.base import FrameData
from slam.live.feed import LiveFeed
from slam.tracking import TrackResult

_RECENT = 30  # frames in the on-screen fps / latency figures


class LiveMonitor:
    def __init__(self, feed: LiveFeed, log: Callable[[str], None], every_s: float = 2.0):
        self.feed = feed
        self.log = log
        self.every_s = every_s
        self.stop_requested = threading.Event()
        self.latencies_ms: list[float] = []
        self.done_at: list[float] = []
        self.state = ""
        self._last_log: float | None = None  # the first status line comes every_s after the first frame

    def on_frame(self, frame: FrameData, result: TrackResult) -> bool:
        now = time.perf_counter()
        captured = self.feed.captured_at(frame.index)
        if captured is not None:
            self.latencies_ms.append((now - captured) * 1000.0)
        self.done_at.append(now)
        self.state = result.state.value
        if self._last_log is None:
            self._last_log = now
        elif now - self._last_log >= self.every_s:
            self._last_log = now
            self.log(self.status_line())
        return self.stop_requested.is_set()

    def status_line(self) -> str:
        counts = self.feed.capture.counts()
        done = self.done_at[-_RECENT:]
        fps = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
        latency = float(np.median(self.latencies_ms[-_RECENT:])) if self.latencies_ms else float("nan")
        return (
            f"live: {fps:.1f} fps | latency {latency:.0f} ms | dropped {counts.dropped}/{counts.captured} "
            f"| tracking {self.state or '-'}"
        )

    def summary(self) -> dict[str, Any]:
        """run.json's 'live' section: the capture's counts, tracking-side fps and latency."""
        counts = self.feed.capture.counts()
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        span = self.done_at[-1] - self.done_at[0] if len(self.done_at) > 1 else 0.0
        live: dict[str, Any] = {
            "source": self.feed.capture.source.name,
            "source_end": self.feed.capture.end_reason or "the run stopped first",
            "frames_captured": counts.captured,
            "frames_delivered": counts.delivered,
            "frames_dropped": counts.dropped,
            "dropped_ratio": counts.dropped / counts.captured if counts.captured else 0.0,
            "processed_fps": (len(self.done_at) - 1) / span if span > 0 else float("nan"),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "latency_ms_max": float(np.max(lat)),
        }
        if self.feed.recorder is not None:
            record = self.feed.recorder.close()
            live["record"] = {"folder": record.folder, "frames": record.frames, "skipped": record.skipped}
        return {"live": live}
