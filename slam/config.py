"""Typed configuration: defaults in code, a YAML file overrides them, `--set a.b=v` overrides both.

Unknown keys and values of the wrong type are refused with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slam.errors import SlamInputError
from slam.yamlutil import parse_yaml

MODES = ("rgbd", "stereo", "mono")
DATASET_FORMATS = ("tum", "kitti", "euroc", "video", "images", "webcam")


@dataclass(frozen=True)
class CameraConfig:
    """Intrinsics for data that carries none (TUM, video); KITTI and EuRoC read their own calibration."""

    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    width: int | None = None
    height: int | None = None
    dist: tuple[float, ...] = ()
    # Stereo baseline in metres; for RGB-D a virtual baseline used to weigh depth like a stereo disparity.
    baseline: float | None = None
    depth_scale: float = 5000.0  # raw depth units per metre (TUM: 5000)
    # Points closer than depth_threshold * baseline are "close" (reliable depth), as in ORB-SLAM.
    depth_threshold: float = 40.0
    fps: float = 30.0


@dataclass(frozen=True)
class DatasetConfig:
    format: str = "tum"
    max_depth_diff_s: float = 0.02  # rgb-depth association tolerance
    # Frames decoded ahead by the reader thread. Fed at the recorded rate the queue is always full, so every slot
    # is a decoded frame held (TUM RGB-D: 2.1 MB): 8 -> 2 lowered the teddy RGB-D threaded peak by 10 MB.
    prefetch: int = 2
    realtime: bool = True  # feed recorded frames at their recorded rate (false: as fast as possible)


@dataclass(frozen=True)
class FeaturesConfig:
    type: str = "orb"
    n_features: int = 1000
    scale_factor: float = 1.2
    n_levels: int = 8
    fast_threshold: int = 20  # FAST threshold of a grid cell's corners ...
    min_fast_threshold: int = 7  # ... and of a cell with no corner at fast_threshold (ORB-SLAM's iniThFAST, minThFAST)
    # ORB: pyramid levels (and a stereo pair's two images) extracted on this many threads; OpenCV releases the
    # GIL and the keypoints are the same for any count (see slam/features/orb.py)
    threads: int = 2
    weights: str | None = None
    device: str = "auto"


@dataclass(frozen=True)
class EstimationConfig:
    """Robust two-view estimation (OpenCV USAC; slam/features/estimation.py) and the ORB + PnP peer's PnP."""

    method: str = "magsac"  # MAGSAC++ (USAC) or plain "ransac"
    threshold_px: float = 1.0  # essential / fundamental / homography inlier threshold
    pnp_threshold_px: float = 3.0  # slam.bench.peers.orb_pnp
    confidence: float = 0.999
    max_iterations: int = 10000


@dataclass(frozen=True)
class TrackingConfig:
    min_tracked_points: int = 30  # fewer inliers than this: tracking is lost
    projection_radius_px: float = 7.0  # motion-model search window at octave 0 (doubled for monocular)
    # Scales the local-map search window (2.5-4 px at octave 0): ORB-SLAM's 1 for stereo and monocular; its RGB-D
    # value, 3, is set in the packaged RGB-D configs.
    local_map_search_factor: float = 1.0
    ransac_threshold_px: float = 4.0
    keyframe_max_frames: int = 30  # insert a keyframe at least this often (frames)
    keyframe_min_frames: int = 0
    # Seconds since the last keyframe before one is inserted while mapping is busy (with nothing queued). It was 5
    # frames: 0.17 s at TUM's 30 Hz but 0.5 s at KITTI's 10 Hz, where a monocular turn of 4-5 degrees a frame
    # outran it (tests/integration/test_monocular.py: lost at frame 52 with a mapper never idle; kept, 96/100
    # frames, counted in time). Threaded, 7 runs each: KITTI 06 0.042 -> 0.037 m median (spreads 0.032-0.052 and
    # 0.031-0.053), KITTI 07 mono 0.332 -> 0.333 m (4 runs); teddy is unchanged by construction (5 frames at
    # 30 Hz). 0.16 s is 5 frames at 30 Hz, 2 at 10 Hz, 4 at 20 Hz.
    keyframe_busy_s: float = 0.16
    # RGB-D / stereo: a keyframe when the frame tracks fewer than this share of its reference keyframe's points
    # (monocular: 0.9). ORB-SLAM uses 0.75; chosen on the synthetic sequences (not a benchmark chunk), with the
    # reference keyframe sharing most points, 0.75 -> 0.9: RGB-D 4.55 -> 3.04 mm sync, 8.4 -> 3.6 mm threaded
    # (median of 3); stereo 6.11 -> 4.39 mm sync, 6.2 -> 4.0 mm threaded (docs/benchmarks.md).
    keyframe_tracked_ratio: float = 0.9
    close_tracked_min: int = 100
    close_untracked_min: int = 70
    final_pose_refinement: bool = True  # re-estimate every frame's pose against the final map at the end
    init_min_parallax_deg: float = 1.0  # monocular: two views closer in angle than this give no map


@dataclass(frozen=True)
class MappingConfig:
    enabled: bool = True
    # false: local mapping runs in the tracking thread after each keyframe: slower, but the same input gives
    # the same trajectory (threaded keyframe decisions depend on whether mapping is busy at that moment)
    threaded: bool = True
    covisible_keyframes: int = 10  # neighbours used for triangulation and the local BA window
    local_ba_iterations: int = 10
    local_ba_window: int = 10
    local_ba_fixed: int = 10  # outside keyframes held fixed in local BA (those sharing the most points)
    thread_niceness: int = 5  # the mapping thread runs at a lower CPU priority than tracking (Linux)
    final_global_ba: bool = True  # one bundle adjustment over the whole map when the sequence ends
    max_keyframes: int = 0  # 0 = unbounded; otherwise a sliding window (VO mode)
    cull_redundant_ratio: float = 0.9


@dataclass(frozen=True)
class LoopClosingConfig:
    enabled: bool = True
    # Sim(3) loops in monocular maps. On by default since the loop thread got cheap enough for two cores
    # (docs/benchmarks.md, sixth session): threaded, 5 runs each, the synthetic 400-frame loop 13.4 -> 6.4 mm at
    # the median (every run closed it), the 1000-frame orbit 9.0-13.2 -> 3.3-3.7 mm; teddy / KITTI 07 unchanged.
    monocular: bool = True
    vocabulary: str | None = None  # a `slam vocab train` file; the packaged ORB vocabulary when unset
    min_keyframes_between: int = 10  # keyframes after a loop (and between a keyframe and its candidates)
    min_consistency: int = 3  # consecutive keyframes that must agree on a candidate
    min_matches: int = 40  # point matches that confirm a loop (half of them from the RANSAC alignment)
    max_rotation_std_deg: float = 0.2  # RGB-D / stereo: how well the loop's matches must pin the pose down
    max_translation_std_m: float = 0.01
    global_ba_iterations: int = 10  # a global bundle adjustment after each loop (0: none)
    max_scale_change: float = 1.25  # monocular: loops that would rescale the map by more (or 1/more) are refused


@dataclass(frozen=True)
class ViewerConfig:
    mode: str = "none"  # live (open3d + OpenCV windows), record (PNGs in OUT/frames, OUT/overview.png) or none
    record_every: int = 10  # record: one frame image every this many frames
    interval_ms: int = 100  # live: a map snapshot at most this often (the tracking thread pays for each)


@dataclass(frozen=True)
class Config:
    mode: str = "rgbd"
    seed: int = 0
    camera: CameraConfig = field(default_factory=CameraConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    estimation: EstimationConfig = field(default_factory=EstimationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    loop_closing: LoopClosingConfig = field(default_factory=LoopClosingConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)


_CHOICES = {"mode": MODES, "dataset.format": DATASET_FORMATS, "viewer.mode": ("none", "live", "record"),
            "estimation.method": ("magsac", "ransac")}
# Keys whose value must exceed a bound: a scale bound of 1 or less would refuse every monocular loop.
_ABOVE = {"loop_closing.max_scale_change": 1.0, "features.threads": 0}
# Keys whose value must lie in a closed range: FAST compares 8-bit intensity differences.
_WITHIN = {"features.fast_threshold": (0, 255), "features.min_fast_threshold": (0, 255)}


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a Config from code defaults, an optional YAML file and `section.key=value` overrides."""
    data: dict[str, Any] = {}
    config = Config()
    if path is not None:
        data = _read_yaml(Path(path))
        config = _build(Config, data, prefix="", source=str(path))
    if overrides:
        for item in overrides:
            key, value = _parse_override(item)
            _set_nested(data, key.split("."), value)
        config = _build(Config, data, prefix="", source="--set")
    _check_related(config, "--set" if overrides else str(path))
    return config


def _check_related(config: Config, source: str) -> None:
    """Settings that only make sense together: refused in one line naming both keys, never left to fail silently
    (thresholds that scale with another setting follow it in the code instead)."""
    f, t = config.features, config.tracking
    if f.n_features < 2 * t.min_tracked_points:
        raise SlamInputError(
            f"config key 'features.n_features' ({f.n_features}) must be at least twice 'tracking.min_tracked_points' "
            f"({t.min_tracked_points}): a frame keeps its track only with that many matched keypoints", source)
    if t.keyframe_min_frames > t.keyframe_max_frames:
        raise SlamInputError(
            f"config key 'tracking.keyframe_min_frames' ({t.keyframe_min_frames}) must not exceed "
            f"'tracking.keyframe_max_frames' ({t.keyframe_max_frames})", source)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SlamInputError("config file not found", path)
    data = parse_yaml(path.read_text(errors="replace"), path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SlamInputError("a config must be a mapping of sections", path)
    return data


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise SlamInputError(f"--set expects section.key=value, got '{item}'")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):  # not YAML: the text itself
        value = raw
    return key.strip(), value


def _set_nested(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = data.setdefault(key, {})
        if not isinstance(node, dict):
            raise SlamInputError(f"'{key}' is not a section")
        data = node
    data[keys[-1]] = value


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise SlamInputError(f"'{prefix.rstrip('.')}' must be a mapping", source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise SlamInputError(f"unknown config key '{prefix}{key}'", source)
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key + ".", source)
        else:
            kwargs[name] = _coerce(value, hint, key, source)
    config = cls(**kwargs)
    for name in names:
        allowed = _CHOICES.get(prefix + name)
        if allowed is not None and getattr(config, name) not in allowed:
            raise SlamInputError(
                f"config key '{prefix}{name}' must be one of {', '.join(allowed)}, got '{getattr(config, name)}'",
                source,
            )
        bound = _ABOVE.get(prefix + name)
        if bound is not None and not getattr(config, name) > bound:
            raise SlamInputError(f"config key '{prefix}{name}' must be above {bound}, got {getattr(config, name)}",
                                 source)
        span = _WITHIN.get(prefix + name)
        if span is not None and not span[0] <= getattr(config, name) <= span[1]:
            raise SlamInputError(f"config key '{prefix}{name}' must be within {span[0]}..{span[1]}, got "
                                 f"{getattr(config, name)}", source)
    return config


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, source)
            except SlamInputError:
                continue
        raise _type_error(key, value, hint, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, value, hint, source)
        (item_type, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(v, item_type, key, source) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(_as_float(value)):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise _type_error(key, value, hint, source)


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf


def _type_error(key: str, value: Any, hint: Any, source: str) -> SlamInputError:
    name = getattr(hint, "__name__", str(hint)).replace("NoneType", "None")
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return SlamInputError(f"config key '{key}' expects {name}, got {shown}", source)


def to_dict(config: Config) -> dict[str, Any]:
    """The config as plain data (for run.json)."""
    return dataclasses.asdict(config)
