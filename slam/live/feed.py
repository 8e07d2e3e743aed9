"""A live capture as a slam.io Sequence, so `slam live` runs through the same runner as `slam run`.

Each frame tracking asks for is the capture's newest, checked against the calibration's size,
handed to the recorder (as captured) and undistorted. Nothing is prefetched: a frame read ahead would
only be older by the time tracking took it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from slam.errors import SlamInputError
from slam.io.base import FrameData
from slam.io.calibration import Calibration, Undistorter, check_size
from slam.io.video import StreamSequence
from slam.live.capture import FrameCapture
from slam.live.recorder import Recorder

_KEEP_CAPTURE_TIMES = 64


class LiveFeed:
    """Turns captured frames into FrameData and remembers when each was captured (for latency)."""

    def __init__(self, capture: FrameCapture, calibration: Calibration, recorder: Recorder | None = None):
        self.capture = capture
        self.calibration = fit_calibration(calibration, capture)
        self.recorder = recorder
        self._undistort = Undistorter.for_calibration(self.calibration)
        self._captured_at: dict[int, float] = {}

    def load(self, index: int) -> FrameData:
        frame = self.capture.next()
        name = self.capture.source.name
        check_size(frame.image, self.calibration.width, self.calibration.height, name)
        if self.recorder is not None:
            self.recorder.add(frame.timestamp, frame.image)
        image = self._undistort.image(frame.image) if self._undistort is not None else frame.image
        self._captured_at[index] = frame.captured_at
        self._captured_at.pop(index - _KEEP_CAPTURE_TIMES, None)  # unclaimed (no monitor): keep the dict small
        return FrameData(index=index, timestamp=frame.timestamp, image=image, path=f"{name}#{frame.number}")

    def captured_at(self, index: int) -> float | None:
        """When the frame handed out as `index` was captured (perf_counter), once; None if unknown."""
        return self._captured_at.pop(index, None)

    def close(self) -> None:
        self.capture.close()
        if self.recorder is not None:
            self.recorder.close()


@dataclass
class LiveSequence(StreamSequence):
    """A StreamSequence with no length whose iteration closes the capture (and recorder) when it ends."""

    feed: LiveFeed | None = field(default=None, repr=False)

    def frames(self, max_frames: int | None = None) -> Iterator[FrameData]:
        try:
            yield from super().frames(max_frames)
        finally:
            if self.feed is not None:
                self.feed.close()


def live_sequence(feed: LiveFeed) -> LiveSequence:
    return LiveSequence(
        name=feed.capture.source.name,
        camera=feed.calibration.camera(0.0),
        timestamps=np.empty(0),
        load=feed.load,
        prefetch=0,
        unbounded=True,
        feed=feed,
    )


def fit_calibration(calibration: Calibration, capture: FrameCapture) -> Calibration:
    """The calibration must describe the images the source gives: same size, else a one-line error."""
    size = (capture.width, capture.height)
    if calibration.width is None or calibration.height is None:
        return calibration.with_size(*size)
    if (calibration.width, calibration.height) != size:
        raise SlamInputError(
            f"the source gives {size[0]}x{size[1]} images but the calibration is for "
            f"{calibration.width}x{calibration.height}",
            capture.source.name,
        )
    return calibration
