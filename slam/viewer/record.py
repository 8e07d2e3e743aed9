"""`--viewer record`: the scene rendered off-screen to OUT/frames/<frame>.png every N frames (the map from
above beside the current image with its features) and OUT/overview.png at the end (map, trajectory, ground
truth). open3d renders when it can; otherwise the numpy renderer draws the same scene through the same view.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import cv2
import numpy as np

from slam.viewer.channel import take_all
from slam.viewer.overlay import annotate
from slam.viewer.raster import RasterRenderer
from slam.viewer.scene import build_scene, overview_view
from slam.viewer.snapshot import Snapshot

FRAMES = "frames"
OVERVIEW = "overview.png"
FRAME_SIZE = (800, 600)
OVERVIEW_SIZE = (1280, 960)
_POLL_S = 0.5
VIEWER_NICENESS = 10  # the viewer processes run at a lower CPU priority than the run


def make_renderer(width: int, height: int, kind: str = "auto"):
    """open3d's off-screen renderer, or the numpy one when open3d is missing or cannot render here."""
    if kind in ("auto", "open3d"):
        try:
            from slam.viewer.o3d_scene import OffscreenRenderer

            return OffscreenRenderer(width, height)
        except (ImportError, OSError, RuntimeError):
            if kind == "open3d":
                raise
    return RasterRenderer()


def render_map(snapshot: Snapshot, renderer, width: int, height: int) -> np.ndarray:
    """(H,W,3) uint8 RGB: the snapshot's scene from the overview camera."""
    return renderer.render(build_scene(snapshot), overview_view(snapshot, width, height))


def compose_frame(map_rgb: np.ndarray, snapshot: Snapshot) -> np.ndarray:
    """BGR: the map view on the left, the current image (scaled to the same height) on the right."""
    left = cv2.cvtColor(map_rgb, cv2.COLOR_RGB2BGR)
    if snapshot.image is None:
        return left
    right = annotate(snapshot)
    h = left.shape[0]
    right = cv2.resize(right, (max(1, round(right.shape[1] * h / right.shape[0])), h), interpolation=cv2.INTER_AREA)
    return np.hstack([left, right])


def frame_path(out_dir: Path, frame_index: int) -> Path:
    return Path(out_dir) / FRAMES / f"{frame_index:06d}.png"


def write_frame(snapshot: Snapshot, out_dir: Path, renderer) -> Path:
    path = frame_path(out_dir, snapshot.frame_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_png(path, compose_frame(render_map(snapshot, renderer, *FRAME_SIZE), snapshot))
    return path


def write_overview(snapshot: Snapshot, path: str | Path, renderer: str = "auto") -> Path:
    """Render the overview image in this process (closing the renderer afterwards)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    drawer = make_renderer(*OVERVIEW_SIZE, kind=renderer)
    try:
        rgb = render_map(snapshot, drawer, *OVERVIEW_SIZE)
    finally:
        drawer.close()
    _write_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def clear_outputs(out_dir: Path) -> None:
    """Frames and overview of an earlier run in the same folder would mix with this one's."""
    for old in (Path(out_dir) / FRAMES).glob("[0-9]*.png"):
        old.unlink()
    (Path(out_dir) / OVERVIEW).unlink(missing_ok=True)


def count_frames(out_dir: Path) -> int:
    return len(list((Path(out_dir) / FRAMES).glob("[0-9]*.png")))


def run_process(queue, controls, settings) -> None:
    """The recorder process: render every snapshot that arrives; the final one becomes the overview."""
    os.nice(VIEWER_NICENESS)  # tracking first: on two cores the recorder competes with it for the CPU
    os.environ.setdefault("LP_NUM_THREADS", "1")  # Mesa's software renderer: one thread is enough off-screen
    out_dir = Path(settings.out_dir)
    final = _record_frames(queue, out_dir)
    if final is not None:
        write_overview(final, out_dir / OVERVIEW)


def _record_frames(queue, out_dir: Path) -> Snapshot | None:
    """Frames until the final snapshot arrives (returned) or the run's process is gone (None)."""
    parent = multiprocessing.parent_process()
    renderer = make_renderer(*FRAME_SIZE)
    try:
        while parent is None or parent.is_alive():
            for snapshot in take_all(queue, _POLL_S):
                if snapshot.final:
                    return snapshot
                write_frame(snapshot, out_dir, renderer)
        return None
    finally:
        renderer.close()


def _write_png(path: Path, bgr: np.ndarray) -> None:
    """Written under a temporary name first, so a reader never sees half an image."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not cv2.imwrite(str(tmp), bgr):
        raise OSError(f"could not write {path}")
    tmp.replace(path)
