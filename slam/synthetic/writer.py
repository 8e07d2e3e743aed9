"""Writes synthetic sequences as TUM RGB-D folders, atomically, and caches them for `slam demo`."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import yaml

from slam.camera import Camera
from slam.errors import SlamInputError, SlamRuntimeError
from slam.synthetic.render import Renderer
from slam.synthetic.scene import build_scene
from slam.synthetic.trajectories import TRAJECTORIES, make_trajectory
from slam.trajectory import Trajectory, write_text_atomic, write_tum

GENERATOR_VERSION = 1  # bump whenever the output for given parameters changes: invalidates caches
RGBD_BASELINE = 0.08  # metres: the virtual baseline written for RGB-D-only sequences
STEREO_BASELINE = 0.1  # metres: the right camera sits this far along the left camera's +x axis
DEPTH_SCALE = 5000.0  # depth PNG units per metre (TUM)
COMPLETE_MARKER = ".complete"  # written last: its presence means the folder is whole
_FOCAL_AT_640 = 525.0  # TUM-like field of view (about 62 x 49 degrees at 640x480)
_WRITES_IN_FLIGHT = 8
_STALE_PARTIAL_S = 6 * 3600.0


def synthetic_camera(width: int = 640, height: int = 480, baseline: float = 0.0) -> Camera:
    """The pinhole camera of the synthetic sequences: square pixels, principal point at the image centre."""
    f = _FOCAL_AT_640 * width / 640.0
    return Camera(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height, baseline)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/slam/synthetic, else ~/.cache/slam/synthetic."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "slam" / "synthetic"


def render_sequence(out: str | Path, frames: int = 300, seed: int = 0, trajectory: str = "orbit",
                    stereo: bool = False, width: int = 640, height: int = 480, fps: float = 30.0,
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Render a synthetic sequence into the TUM folder `out` and return it.

    The folder is assembled under a hidden temporary name beside `out` and renamed into place when
    complete, so an interrupted run never leaves a folder that looks finished. An existing `out` is
    replaced only if it is empty or a complete synthetic sequence. `progress(done, total)` is called
    after each frame.
    """
    params = _check_params(frames, seed, trajectory, stereo, width, height, fps)
    out = Path(out)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        _write_sequence(tmp, params, progress)
        write_text_atomic(tmp / COMPLETE_MARKER, _marker_text(params))
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def ensure_sequence(cache_dir: str | Path | None = None, frames: int = 300, seed: int = 0,
                    trajectory: str = "orbit", stereo: bool = False, width: int = 640, height: int = 480,
                    fps: float = 30.0, progress: Callable[[int, int], None] | None = None) -> Path:
    """The cached sequence for these parameters (rendered first if missing or incomplete)."""
    params = _check_params(frames, seed, trajectory, stereo, width, height, fps)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / _cache_key(params)
    if is_complete(folder, params):
        return folder
    if folder.exists():
        # Ours (the name is our key) but unfinished or from another generator version: start over.
        shutil.rmtree(folder)
    _remove_stale_partials(folder)
    try:
        return render_sequence(folder, progress=progress, **params)
    except OSError:
        if is_complete(folder, params):  # another process finished the same sequence first
            return folder
        raise


def _remove_stale_partials(folder: Path) -> None:
    """Delete temporary folders that killed renders of `folder` left behind (old enough to be dead)."""
    if not folder.parent.is_dir():
        return
    now = time.time()
    for partial in folder.parent.glob(f".{folder.name}.partial-*"):
        with contextlib.suppress(OSError):
            if now - partial.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(partial)


def is_complete(folder: str | Path, params: dict | None = None) -> bool:
    """Whether `folder` is a finished synthetic sequence (made with `params`, when given)."""
    marker = Path(folder) / COMPLETE_MARKER
    if not marker.is_file():
        return False
    if params is None:
        return True
    return marker.read_text() == _marker_text(params)


def _check_params(frames, seed, trajectory, stereo, width, height, fps) -> dict:
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise SlamInputError(f"frames must be a positive integer, got {frames!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise SlamInputError(f"seed must be a non-negative integer, got {seed!r}")
    if trajectory not in TRAJECTORIES:
        raise SlamInputError(f"unknown trajectory '{trajectory}' (expected one of {', '.join(TRAJECTORIES)})")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 16 <= value <= 8192:
            raise SlamInputError(f"{name} must be an integer in [16, 8192], got {value!r}")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 0 < fps <= 1000:
        raise SlamInputError(f"fps must be a number in (0, 1000], got {fps!r}")
    return {"frames": int(frames), "seed": int(seed), "trajectory": trajectory, "stereo": bool(stereo),
            "width": int(width), "height": int(height), "fps": float(fps)}


def _cache_key(params: dict) -> str:
    kind = "stereo" if params["stereo"] else "rgbd"
    return (f"{params['trajectory']}-{kind}-{params['frames']}f-seed{params['seed']}-"
            f"{params['width']}x{params['height']}-{params['fps']:g}fps-v{GENERATOR_VERSION}")


def _marker_text(params: dict) -> str:
    return json.dumps({"generator_version": GENERATOR_VERSION, **params}, sort_keys=True) + "\n"


def _check_replaceable(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise SlamInputError("output exists and is not a folder", out)
    if any(out.iterdir()) and not is_complete(out):
        raise SlamInputError("output folder is not empty and not a synthetic sequence; refusing to overwrite it",
                             out)


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to `out`; a previous `out` is moved aside first, then deleted."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def frame_names(frames: int, fps: float) -> tuple[np.ndarray, list[str]]:
    """Timestamps (rounded to the microsecond, as written) and their 6-decimal names."""
    timestamps = np.round(np.arange(frames) / fps, 6)
    return timestamps, [f"{t:.6f}" for t in timestamps]


def _write_sequence(folder: Path, params: dict, progress: Callable[[int, int], None] | None) -> None:
    frames, stereo = params["frames"], params["stereo"]
    timestamps, names = frame_names(frames, params["fps"])
    poses = make_trajectory(params["trajectory"], timestamps, params["seed"])
    baseline = STEREO_BASELINE if stereo else RGBD_BASELINE
    camera = synthetic_camera(params["width"], params["height"], baseline)
    renderer = Renderer(build_scene(params["seed"]), camera)
    streams = ["rgb", "depth"] + (["right"] if stereo else [])
    for stream in streams:
        (folder / stream).mkdir()
    right_offset = np.eye(4)
    right_offset[0, 3] = baseline
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="slam-synthetic-png") as pool:
        for i, (name, T_wc) in enumerate(zip(names, poses, strict=True)):
            image, depth = renderer.render(T_wc)
            outputs = {"rgb": image, "depth": _depth_png(depth)}
            if stereo:
                right, _ = renderer.render(T_wc @ right_offset)
                outputs["right"] = cv2.cvtColor(right, cv2.COLOR_BGR2GRAY)
            for stream, data in outputs.items():
                pending.append(pool.submit(_write_png, folder / stream / f"{name}.png", data))
            while len(pending) > _WRITES_IN_FLIGHT:
                pending.popleft().result()
            if progress is not None:
                progress(i + 1, frames)
        for future in pending:
            future.result()
    titles = {"rgb": "color images", "depth": "depth maps", "right": "rectified right images"}
    for stream in streams:
        _write_listing(folder / f"{stream}.txt", titles[stream], stream, names, params)
    write_tum(folder / "groundtruth.txt", Trajectory(timestamps, poses))
    _write_calibration(folder / "calibration.yaml", camera)


def _depth_png(depth: np.ndarray) -> np.ndarray:
    raw = np.round(depth * DEPTH_SCALE)
    raw[raw > np.iinfo(np.uint16).max] = 0  # beyond 13.1 m: unrepresentable, so invalid
    return raw.astype(np.uint16)


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise SlamRuntimeError(f"{path}: cannot write image")


def _write_listing(path: Path, title: str, stream: str, names: list[str], params: dict) -> None:
    header = (f"# {title}\n# synthetic sequence: trajectory {params['trajectory']}, seed {params['seed']}, "
              f"generator {GENERATOR_VERSION}\n# timestamp filename\n")
    lines = [f"{name} {stream}/{name}.png\n" for name in names]
    write_text_atomic(path, header + "".join(lines))


def _write_calibration(path: Path, camera: Camera) -> None:
    data = {"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy, "width": camera.width,
            "height": camera.height, "dist": [], "baseline": camera.baseline, "depth_scale": DEPTH_SCALE}
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
