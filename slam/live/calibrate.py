"""`slam calibrate`: checkerboard views from a camera, an image folder or a video, fitted and written as the
calibration YAML that `slam live --calib` and `slam run --calib` read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slam.errors import SlamInputError
from slam.io.base import read_image
from slam.io.calibration import as_uint8_image, write_calibration
from slam.io.video import IMAGE_EXTENSIONS, order_and_time
from slam.live.capture import CaptureSource, FrameCapture, open_capture
from slam.live.checkerboard import CalibrationResult, Verdict, ViewSelector, calibrate

Frames = Iterator[tuple[str, np.ndarray]]  # (name for messages, image)


@dataclass(frozen=True)
class CalibrateOptions:
    out: Path
    views: int = 20  # a camera stops once this many views are accepted
    every: int = 5  # a video: try every n-th frame (neighbours are near-copies anyway)
    fix_k3: bool = True


def folder_frames(folder: str | Path) -> Frames:
    folder = Path(folder)
    if not folder.is_dir():
        raise SlamInputError("image folder not found", folder)
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if not files:
        raise SlamInputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder", folder)
    ordered, _ = order_and_time(files, 1.0)
    for path in ordered:
        yield path.name, as_uint8_image(read_image(path), path)


def video_frames(path: str | Path, every: int) -> Frames:
    """Every `every`-th frame of a video file, read in order (none dropped: no live pacing)."""
    source = CaptureSource.video(path)
    capture = open_capture(source)
    try:
        number = 0
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            if number % every == 0:
                yield f"{source.name}#{number}", image
            number += 1
    finally:
        capture.release()


def camera_frames(index: int | str) -> Frames:
    """The camera's newest frame each time one is asked for (judging a view is slower than the camera)."""
    with FrameCapture(CaptureSource.camera(index)) as capture:
        while True:
            frame = capture.next()
            yield f"{capture.source.name}#{frame.number}", frame.image


def run_calibration(
    frames: Frames, selector: ViewSelector, options: CalibrateOptions, log: Callable[[str], None], live: bool = False
) -> CalibrationResult:
    """Judge frames until they end (or, for a live camera, enough views or Ctrl-C); fit and write the YAML."""
    try:
        for name, image in frames:
            verdict = selector.add(image, name)
            if verdict is Verdict.ACCEPTED:
                log(f"{name}: view {len(selector.corners)} accepted")
            elif not live:
                log(f"{name}: {verdict.value}")
            if live and len(selector.corners) >= options.views:
                break
    except KeyboardInterrupt:
        if not live:
            raise
        log("stopped: calibrating with the views so far")
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # releases the camera or video now
    result = calibrate(selector, fix_k3=options.fix_k3)
    write_calibration(options.out, result.calibration)
    return result


def describe(result: CalibrationResult, selector: ViewSelector) -> list[str]:
    c = result.calibration
    worst = int(np.argmax(result.view_rms_px))
    lines = [
        f"views: {selector.report()}",
        f"RMS reprojection error {result.rms_px:.3f} px over {result.views} views "
        f"(worst view {worst + 1}: {result.view_rms_px[worst]:.3f} px)",
        f"fx={c.fx:.2f} fy={c.fy:.2f} cx={c.cx:.2f} cy={c.cy:.2f} size={c.width}x{c.height} "
        f"dist={' '.join(f'{d:.5f}' for d in c.dist)}",
    ]
    if result.rms_px > 1.0:
        lines.append(
            "warning: an RMS error above 1 px usually means a board that is not flat, motion blur or a "
            "rolling-shutter camera moved during the shots"
        )
    return lines
