"""Feeding recorded frames at the rate they were recorded, as a live camera would deliver them."""

from __future__ import annotations

import time


class Pacer:
    """Feed frames no faster than the camera recorded them (ORB-SLAM's examples do the same): local mapping
    then gets the time a real run gives it. Late frames are not skipped."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.origin: tuple[float, float] | None = None

    def wait(self, timestamp: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.origin is None:
            self.origin = (now, timestamp)
            return
        due = self.origin[0] + (timestamp - self.origin[1])
        if due > now:
            time.sleep(due - now)

    def shift(self, seconds: float) -> None:
        """Time the run was held (the viewer's pause) is not time the camera was recording."""
        if self.origin is not None and seconds > 0:
            self.origin = (self.origin[0] + seconds, self.origin[1])
