"""The `slam live` and `slam calibrate` commands (argument parsing and printing; the work is in slam.live)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

VIEWER_MODES = ("none", "live", "record")
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "live_mono.yaml"


def add_commands(sub) -> None:
    """Add `live` and `calibrate` to the `slam` command's subparsers."""
    live = sub.add_parser("live", help="monocular SLAM on a camera, a stream URL or a video played as a camera")
    _add_source(live, camera=True, url=True, images=False)
    live.add_argument("--calib", required=True, metavar="CAM.yaml", help="calibration (from slam calibrate)")
    live.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default configs/live_mono.yaml)")
    live.add_argument("--out", default=None, help="output folder (default runs/live-DATE-TIME)")
    live.add_argument("--record", metavar="DIR", help="also write the frames as a folder `slam run` replays")
    live.add_argument("--save-map", metavar="FILE", help="save the map at the end (see slam/map_io.py)")
    live.add_argument("--viewer", choices=VIEWER_MODES, default=None)
    live.add_argument("--max-frames", type=int, default=None)
    live.add_argument("--fps", type=float, default=None, help="play --video at this rate (default: its own)")
    live.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    live.set_defaults(func=cmd_live)

    cal = sub.add_parser("calibrate", help="checkerboard calibration (pinhole + distortion) to a YAML file")
    _add_source(cal, camera=True, url=False, images=True)
    cal.add_argument("--board", default="9x6", help="inner corners COLSxROWS (default 9x6)")
    cal.add_argument("--square", type=float, default=0.025, help="square side in metres (default 0.025)")
    cal.add_argument("--out", required=True, metavar="CAM.yaml")
    cal.add_argument("--views", type=int, default=20, help="--camera: stop after this many accepted views")
    cal.add_argument("--every", type=int, default=5, help="--video: try every n-th frame")
    cal.add_argument("--max-blur", type=float, default=4.0, help="reject boards whose edges rise over more px")
    cal.add_argument("--k3", action="store_true", help="also fit k3 (wide-angle lenses)")
    cal.set_defaults(func=cmd_calibrate)


def _add_source(parser: argparse.ArgumentParser, camera: bool, url: bool, images: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    if camera:
        group.add_argument("--camera", metavar="INDEX", help="camera index (0, 1, ...)")
    if url:
        group.add_argument("--url", help="stream URL (rtsp://, http://...)")
    if images:
        group.add_argument("--images", metavar="DIR", help="folder of images showing the board")
    group.add_argument("--video", metavar="FILE", help="video file")


def calibration_overrides(path: str | Path) -> list[str]:
    """A calibration YAML as `--set` overrides of the camera section (for data that carries none)."""
    from slam.io.calibration import read_calibration

    c = read_calibration(path)
    dist = ", ".join(repr(float(d)) for d in c.dist)
    return [
        f"camera.fx={c.fx!r}",
        f"camera.fy={c.fy!r}",
        f"camera.cx={c.cx!r}",
        f"camera.cy={c.cy!r}",
        f"camera.width={c.width}",
        f"camera.height={c.height}",
        f"camera.dist=[{dist}]",
    ]


def cmd_live(args) -> int:
    from slam.config import load_config
    from slam.live.capture import CaptureSource
    from slam.live.session import LiveOptions, run_live

    overrides = list(args.overrides)
    if args.viewer:
        overrides.append(f"viewer.mode={args.viewer}")
    config = load_config(args.config, overrides)
    if args.camera is not None:
        source = CaptureSource.camera(args.camera)
    elif args.url is not None:
        source = CaptureSource.url(args.url)
    else:
        source = CaptureSource.video(args.video)
    out = Path(args.out) if args.out else Path("runs") / time.strftime("live-%Y%m%d-%H%M%S")
    options = LiveOptions(
        source,
        Path(args.calib),
        out,
        Path(args.record) if args.record else None,
        args.max_frames,
        args.fps,
        save_map=Path(args.save_map) if args.save_map else None,
    )
    result = run_live(config, options)
    _print_live(result.summary, result.out_dir)
    if result.exit_code == 130:  # Ctrl-C is how a live run normally ends
        print("stopped by Ctrl-C; outputs written", file=sys.stderr)
        return 0
    if result.error:
        print(f"slam live: error: {result.error}", file=sys.stderr)
    return result.exit_code


def _print_live(s: dict, out_dir: Path) -> None:
    live = s["live"]
    print(
        f"frames={s['frames']} tracked={s['tracked_frames']} keyframes={s['keyframes']} "
        f"map_points={s['map_points']} fps={live['processed_fps']:.1f} tracking_ms_p50={s['tracking_ms_p50']:.1f}"
    )
    print(
        f"captured={live['frames_captured']} dropped={live['frames_dropped']} "
        f"({100 * live['dropped_ratio']:.0f}%) latency_ms_p50={live['latency_ms_p50']:.0f} "
        f"latency_ms_p95={live['latency_ms_p95']:.0f}"
    )
    print(f"source: {live['source_end']}")
    if "record" in live:
        print(f"recorded {live['record']['frames']} frames to {live['record']['folder']}")
    print(f"outputs: {out_dir}")


def cmd_calibrate(args) -> int:
    from slam.errors import SlamInputError
    from slam.live.calibrate import (
        CalibrateOptions,
        camera_frames,
        describe,
        folder_frames,
        run_calibration,
        video_frames,
    )
    from slam.live.checkerboard import Board, ViewSelector

    for name, value in (("--views", args.views), ("--every", args.every)):
        if value < 1:
            raise SlamInputError(f"must be at least 1, got {value}", name)
    board = Board.parse(args.board, args.square)
    options = CalibrateOptions(Path(args.out), views=args.views, every=args.every, fix_k3=not args.k3)
    selector = ViewSelector(board, max_blur_px=args.max_blur)
    if args.camera is not None:
        frames, live = camera_frames(args.camera), True
        print(
            f"show the {args.board} board to camera {args.camera} at many positions and angles "
            f"({args.views} views; Ctrl-C to stop early)"
        )
    elif args.images is not None:
        frames, live = folder_frames(args.images), False
    else:
        frames, live = video_frames(args.video, args.every), False
    result = run_calibration(frames, selector, options, log=print, live=live)
    for line in describe(result, selector):
        print(line)
    print(f"calibration written to {options.out}")
    return 0
