"""`slam view` (a finished run in the viewer window, or as an image) and the demo's overview image."""

from __future__ import annotations

from pathlib import Path


def add_commands(sub) -> None:
    """Add `view` to the `slam` command's subparsers."""
    view = sub.add_parser("view", help="open a finished run (map.ply, trajectory.tum, keyframes.tum) in the viewer")
    view.add_argument("run", metavar="DIR", help="the --out folder of slam run")
    view.add_argument(
        "--gt",
        default=None,
        help="ground truth (a trajectory file or a sequence folder), drawn rigidly aligned to the trajectory",
    )
    view.add_argument(
        "--png",
        default=None,
        metavar="FILE",
        help="render the overview image to FILE instead of opening a window (needs no display)",
    )
    view.set_defaults(func=cmd_view)


def cmd_view(args) -> int:
    from slam.errors import SlamInputError
    from slam.viewer.record import write_overview
    from slam.viewer.runfiles import load_run
    from slam.viewer.session import window_problem

    snapshot = load_run(args.run, _groundtruth(args.gt))
    if args.png:
        print(f"overview image written to {write_overview(snapshot, args.png)}")
        return 0
    problem = window_problem()
    if problem:
        raise SlamInputError(f"the viewer window {problem}: use --png FILE to render an image instead")
    from slam.viewer.live import show_run

    show_run(snapshot, title=Path(args.run).name)
    return 0


def demo_overview(out_dir: str | Path, data: str | Path) -> Path:
    """OUT/overview.png of a finished run: its map and trajectory with the data's ground truth."""
    from slam.viewer.record import OVERVIEW, write_overview
    from slam.viewer.runfiles import load_run

    snapshot = load_run(out_dir, _groundtruth(data))
    return write_overview(snapshot, Path(out_dir) / OVERVIEW)


def _groundtruth(path):
    if path is None:
        return None
    from slam.io import load_groundtruth

    return load_groundtruth(path)
