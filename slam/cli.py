"""The `slam` command. Heavy modules are imported inside each command, so `slam --help` is instant."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_STARTED = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from slam.errors import SlamInputError

    try:
        return int(args.func(args) or 0)
    except SlamInputError as exc:
        print(f"slam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slam {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slam", description="Visual SLAM / odometry with built-in evaluation.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run SLAM on a sequence")
    run.add_argument("config", help="YAML config (see configs/)")
    run.add_argument("--data", required=True, help="sequence folder (TUM / KITTI / EuRoC layout), video or images")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--viewer", choices=["none", "live", "record"], default=None)
    run.add_argument("--calib", default=None, metavar="CAM.yaml",
                     help="intrinsics for data without its own (video, images, TUM), e.g. from slam calibrate")
    run.add_argument("--max-frames", type=int, default=None)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--save-map", metavar="FILE", default=None, help="write the final map (see slam/map_io.py)")
    run.add_argument("--load-map", metavar="FILE", default=None, help="start from a saved map")
    run.add_argument("--localize", action="store_true", help="with --load-map: track in the map, do not change it")
    run.set_defaults(func=_cmd_run)

    ev = sub.add_parser("eval", help="ATE / RPE of an estimated trajectory against ground truth")
    ev.add_argument("--gt", required=True)
    ev.add_argument("--est", required=True)
    ev.add_argument("--align", choices=["se3", "sim3"], default="se3")
    ev.add_argument("--max-diff", type=float, default=0.02, help="timestamp association tolerance (s)")
    ev.add_argument("--out", default=None, help="folder for eval.json and plots")
    ev.set_defaults(func=_cmd_eval)

    gt = sub.add_parser("gt", help="a benchmark's ground truth as a TUM file of camera poses")
    gt.add_argument("path", help="TUM / KITTI / EuRoC sequence folder or a poses file")
    gt.add_argument("--out", required=True)
    gt.set_defaults(func=_cmd_gt)

    synth = sub.add_parser("synth", help="render a synthetic TUM-format RGB-D (and stereo) sequence")
    synth.add_argument("out")
    synth.add_argument("--frames", type=int, default=300)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--trajectory", default="orbit",
                       help="orbit, loop, line or turn (a straight walk, a sharp 90 degree turn, walking on)")
    synth.add_argument("--fps", type=float, default=30.0, help="frame rate (10: a car's, a turn in big steps)")
    synth.add_argument("--stereo", action="store_true")
    synth.set_defaults(func=_cmd_synth)

    demo = sub.add_parser("demo", help="generate a synthetic sequence (cached) and run RGB-D SLAM on it")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--frames", type=int, default=300)
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=_cmd_demo)

    from slam.viewer.commands import add_commands as add_viewer_commands  # view

    add_viewer_commands(sub)

    from slam.live.commands import add_commands  # live, calibrate

    add_commands(sub)

    from slam.place.commands import add_commands as add_place_commands  # vocab

    add_place_commands(sub)

    from slam.bench.command import add_command as add_bench_command  # bench

    add_bench_command(sub)

    bench = sub.add_parser("bench-features", help="relative-pose accuracy of extractor x matcher x estimator")
    bench.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                       help="folder holding tum/rgbd_dataset_freiburg3_teddy and kitti/sequences/07")
    bench.add_argument("--out", default="docs/features.md", help="Markdown file for the tables")
    bench.add_argument("--extractors", default="orb,sift,rootsift,superpoint,xfeat")
    bench.add_argument("--matchers", default="mnn,ratio,lighterglue")
    bench.add_argument("--estimators", default="magsac,ransac")
    bench.add_argument("--gaps", default="1,5,10,20")
    bench.add_argument("--pairs", type=int, default=10, help="pairs per gap and sequence")
    bench.add_argument("--n-features", type=int, default=1000)
    bench.add_argument("--threshold", type=float, default=1.0, help="essential-matrix inlier threshold (px)")
    bench.add_argument("--weights", default=None, help="SuperPoint weights (else SLAM_SUPERPOINT_WEIGHTS)")
    bench.add_argument("--device", default="auto")
    bench.set_defaults(func=_cmd_bench_features)
    return parser


def _cmd_bench_features(args) -> int:
    from slam.bench_features import main as bench_main

    return bench_main(args)


def _cmd_run(args) -> int:
    from slam.config import load_config

    overrides = list(args.overrides)
    if args.viewer:
        overrides.append(f"viewer.mode={args.viewer}")
    if args.calib:
        from slam.live.commands import calibration_overrides

        overrides = calibration_overrides(args.calib) + overrides
    config = load_config(args.config, overrides)
    maps = {"load_map": args.load_map, "localize": args.localize, "save_map": args.save_map}
    return _run_and_report(config, args.data, args.out, args.max_frames, not args.quiet, maps)


def _run_and_report(config, data, out, max_frames, progress, maps: dict | None = None) -> int:
    from slam.runner import run_sequence

    result = run_sequence(config, data, out, max_frames=max_frames, progress=progress, started_at=_STARTED,
                          **(maps or {}))
    s = result.summary
    print(f"frames={s['frames']} tracked={s['tracked_frames']} keyframes={s['keyframes']} "
          f"map_points={s['map_points']} fps={s['fps']:.1f} tracking_ms_p50={s['tracking_ms_p50']:.1f}")
    if "ate_rmse_m" in s:
        print(f"ATE_RMSE_m={s['ate_rmse_m']:.6f} ({s['ate_align']}, {s['ate_matched']} poses; "
              f"online, before the final re-fit: {s['ate_online_rmse_m']:.6f})")
    print(f"outputs: {result.out_dir}")
    if result.error:
        print(f"slam run: error: {result.error}", file=sys.stderr)
    return result.exit_code


def _cmd_eval(args) -> int:
    from slam.evaluation import evaluate_files, format_summary

    out = Path(args.out) if args.out else None
    result = evaluate_files(args.gt, args.est, align=args.align, out_dir=out, max_diff=args.max_diff)
    print(format_summary(result))
    return 0


def _cmd_gt(args) -> int:
    from slam.io import load_groundtruth
    from slam.trajectory import write_tum

    trajectory = load_groundtruth(args.path)
    write_tum(args.out, trajectory)
    print(f"{len(trajectory)} poses written to {args.out}")
    return 0


def _cmd_synth(args) -> int:
    from slam.synthetic import render_sequence

    path = render_sequence(Path(args.out), frames=args.frames, seed=args.seed, trajectory=args.trajectory,
                           stereo=args.stereo, fps=args.fps)
    print(f"synthetic sequence written to {path}")
    return 0


def _cmd_demo(args) -> int:
    from slam.config import load_config
    from slam.synthetic import ensure_sequence

    data = ensure_sequence(None, frames=args.frames, seed=0, trajectory="orbit", stereo=False)
    config = load_config(_packaged_config("synthetic_rgbd.yaml"))
    print(f"demo: RGB-D SLAM on the synthetic sequence {data}")
    code = _run_and_report(config, data, args.out, None, not args.quiet)
    from slam.viewer.commands import demo_overview

    print(f"overview image (map, trajectory, ground truth): {demo_overview(args.out, data)}")
    return code


def _packaged_config(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "configs" / name
