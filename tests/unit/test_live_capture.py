"""The live capture thread: newest frame always, dropped frames counted, one-line errors for dead sources."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.errors import SlamInputError
from slam.io.calibration import Calibration, write_calibration
from slam.io.video import EndOfStream
from slam.live.capture import CaptureSource, FrameCapture
from slam.live.feed import LiveFeed, live_sequence

REPO = Path(__file__).resolve().parents[2]
W, H = 64, 48
LEVEL_STEP = 4  # frame n is filled with grey level 10 + 4 n, so each image tells which frame it is


def numbered_video(path: Path, n: int = 60, fps: float = 30.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((H, W, 3), 10 + LEVEL_STEP * i, np.uint8))
    writer.release()
    return path


def frame_number_in(image: np.ndarray) -> int:
    return int(round((float(image.mean()) - 10) / LEVEL_STEP))


def test_slow_consumer_gets_the_newest_frame_and_the_rest_are_counted_dropped(tmp_path):
    video = numbered_video(tmp_path / "cam.avi", n=60)
    started = time.perf_counter()
    with FrameCapture(CaptureSource.video(video), fps=100.0) as capture:  # a 100 Hz camera
        taken = []
        while True:
            newest_before = capture.counts().captured - 1
            try:
                frame = capture.next()
            except EndOfStream as exc:
                assert "the video ended" in str(exc) and "cam.avi" in str(exc)
                break
            # Never older than what the camera had already given when we asked: no queue of stale frames.
            assert frame.number >= newest_before
            assert frame_number_in(frame.image) == frame.number  # the image really is that frame
            assert frame.timestamp == pytest.approx(frame.number / 100.0)
            taken.append(frame.number)
            time.sleep(0.035)  # tracking slower than the camera: 3-4 frames arrive per frame taken
        counts = capture.counts()
    assert time.perf_counter() - started > 0.55  # played at 100 Hz, not as fast as it decodes
    assert taken == sorted(set(taken)) and len(taken) < 40
    assert counts.captured == 60 and counts.delivered == len(taken)
    assert counts.dropped == 60 - len(taken) == sum(b - a - 1 for a, b in zip(taken, taken[1:])) + taken[0]


def test_camera_that_cannot_be_opened_is_a_one_line_error():
    with pytest.raises(SlamInputError, match=r"^camera 97: cannot open the camera"):
        FrameCapture(CaptureSource.camera(97))
    with pytest.raises(SlamInputError, match="a camera index is a number"):
        CaptureSource.camera("front")


def test_cli_prints_one_line_and_nothing_from_opencv_for_a_dead_camera_or_stream(tmp_path):
    calib = tmp_path / "cam.yaml"
    write_calibration(calib, Calibration(50.0, 50.0, 32.0, 24.0, W, H))
    for source, expected in (
        (["--camera", "97"], "camera 97: cannot open the camera"),
        (["--url", "rtsp://127.0.0.1:9/none"], "cannot open the stream"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "slam", "live", *source, "--calib", str(calib), "--out", str(tmp_path / "out")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("slam live: error: ") and expected in lines[0], proc.stderr


def test_feed_checks_the_calibration_size_and_streams_until_the_end(tmp_path):
    video = numbered_video(tmp_path / "cam.avi", n=5)
    with pytest.raises(SlamInputError, match=r"gives 64x48 images but the calibration is for 640x480"):
        LiveFeed(FrameCapture(CaptureSource.video(video)), Calibration(500.0, 500.0, 320.0, 240.0, 640, 480))
    capture = FrameCapture(CaptureSource.video(video))
    feed = LiveFeed(capture, Calibration(50.0, 50.0, 32.0, 24.0))  # the size is taken from the source
    sequence = live_sequence(feed)
    frames = list(sequence)  # no length: iterates until the video ends, then closes the capture
    assert sequence.camera.width == W and [f.index for f in frames] == list(range(len(frames)))
    counts = capture.counts()
    assert counts.captured == 5 and counts.delivered == len(frames) == 5 - counts.dropped
    assert [f.timestamp for f in frames] == sorted(f.timestamp for f in frames)
    assert feed.captured_at(0) is not None and feed.captured_at(0) is None  # handed out once
    assert sequence.warnings and "the video ended" in sequence.warnings[0]


def test_a_source_that_goes_quiet_ends_the_stream_instead_of_hanging(tmp_path):
    video = numbered_video(tmp_path / "cam.avi", n=10)
    with FrameCapture(CaptureSource.video(video), fps=2.0, stall_s=0.2) as capture:  # a frame every 0.5 s
        assert capture.next().number == 0
        with pytest.raises(EndOfStream, match=r"cam.avi: no image for 0.2 s"):
            capture.next()
        assert capture.end_reason.startswith("no image")
