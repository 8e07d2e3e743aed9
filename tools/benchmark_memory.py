"""Memory over a long run in visual-odometry mode (mapping.max_keyframes: a sliding window of keyframes).

A closed synthetic path (the 'loop' trajectory: its last pose equals its first) is rendered once (cached in
~/.cache/slam/synthetic) and replayed round and round with fresh timestamps, so a 10,000-frame run costs no
rendering: only reading, tracking and mapping. Every --every frames it samples the process's resident memory
(now, from /proc/self/statm, and the peak so far, ru_maxrss), the map's size (keyframes and points alive, rows
allocated in its tables) and the trajectory's length. Prints a Markdown table and writes OUT/memory.json.

    .venv/bin/python tools/benchmark_memory.py [--frames 10000] [--loop-frames 301] [--max-keyframes 20]
        [--every 500] [--config configs/synthetic_rgbd.yaml] [--set SECTION.KEY=VALUE ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from slam.config import Config, load_config
from slam.io import Sequence, open_sequence
from slam.synthetic import ensure_sequence
from slam.system import System
from slam.tracking import TrackingState

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "synthetic_rgbd.yaml"


@dataclasses.dataclass(frozen=True)
class Sample:
    frames: int
    seconds: float
    rss_mb: float
    peak_rss_mb: float
    keyframes_alive: int
    keyframes_made: int
    points_alive: int
    point_rows: int
    observation_rows: int
    trajectory_poses: int
    tracked: int


def looped(sequence: Sequence, frames: int, period: int) -> Sequence:
    """`frames` frames replaying sequence frames 0..period-1 in a loop, timed at the sequence's frame rate."""
    step = float(np.median(np.diff(sequence.timestamps))) if len(sequence) > 1 else 1 / 30
    timestamps = np.arange(frames) * step

    def load(i: int):
        return dataclasses.replace(sequence.load(i % period), index=i, timestamp=float(timestamps[i]))

    return Sequence(
        name=f"{sequence.name}-x{frames}",
        camera=sequence.camera,
        timestamps=timestamps,
        load=load,
        prefetch=sequence.prefetch,
    )


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def sample(system: System, frames: int, tracked: int, started: float) -> Sample:
    m = system.map
    with m.lock:
        alive_kfs, made = len(m.alive_keyframe_ids()), len(m.keyframes)
        points, point_rows, obs_rows = len(m.alive_point_ids()), m.points.size, m.obs.size
    return Sample(
        frames,
        time.perf_counter() - started,
        rss_mb(),
        peak_rss_mb(),
        alive_kfs,
        made,
        points,
        point_rows,
        obs_rows,
        len(system.tracker.records),
        tracked,
    )


def run(config: Config, sequence: Sequence, every: int, progress: bool = True) -> list[Sample]:
    """Track every frame of `sequence` with the mapping thread running; a Sample every `every` frames."""
    system = System(config, sequence.camera)
    system.warm_up()
    system.start()
    started = time.perf_counter()
    samples = [sample(system, 0, 0, started)]
    tracked = 0
    frames = sequence.frames()
    try:
        for i, frame in enumerate(frames, 1):
            tracked += system.process(frame).state == TrackingState.OK
            if i % every == 0 or i == len(sequence):
                samples.append(sample(system, i, tracked, started))
                if progress:
                    print(_row(samples[-1]), file=sys.stderr, flush=True)
    finally:
        frames.close()
        system.shutdown(finish_mapping=False)
    return samples


HEADER = (
    "| frames | RSS MB | peak RSS MB | keyframes alive / made | map points alive / rows | observation rows "
    "| trajectory poses | tracked | s |\n|---|---|---|---|---|---|---|---|---|"
)


def _row(s: Sample) -> str:
    return (
        f"| {s.frames} | {s.rss_mb:.0f} | {s.peak_rss_mb:.0f} | {s.keyframes_alive} / {s.keyframes_made} "
        f"| {s.points_alive} / {s.point_rows} | {s.observation_rows} | {s.trajectory_poses} | {s.tracked} "
        f"| {s.seconds:.0f} |"
    )


def table(samples: list[Sample]) -> str:
    return "\n".join([HEADER, *(_row(s) for s in samples)])


def growth_mb_per_1000_frames(samples: list[Sample]) -> float:
    """RSS growth over the second half of the run (after start-up and the first map), per 1000 frames."""
    half = [s for s in samples if s.frames >= samples[-1].frames / 2]
    if len(half) < 2 or half[-1].frames == half[0].frames:
        return float("nan")
    return (half[-1].rss_mb - half[0].rss_mb) / (half[-1].frames - half[0].frames) * 1000


def machine() -> str:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").is_file()
        else ""
    )
    return f"{platform.platform()}; {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.loop_frames < 3 or args.frames < 1 or args.every < 1:
        print("benchmark_memory: --loop-frames >= 3, --frames >= 1 and --every >= 1 are required", file=sys.stderr)
        return 2
    overrides = ["dataset.realtime=false", f"mapping.max_keyframes={args.max_keyframes}", *args.overrides]
    config = load_config(args.config, overrides)
    # Rendered (or found in the cache) in a child process, so the peak RSS measured here is the run's alone.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        data = pool.submit(
            ensure_sequence,
            args.cache,
            frames=args.loop_frames,
            seed=args.seed,
            trajectory="loop",
            width=args.width,
            height=args.height,
        ).result()
    sequence = looped(open_sequence(data, config), args.frames, period=args.loop_frames - 1)
    samples = run(config, sequence, args.every, progress=not args.quiet)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else " ".join(argv),
        "machine": machine(),
        "frames": args.frames,
        "loop_frames": args.loop_frames,
        "max_keyframes": args.max_keyframes,
        "config": str(args.config),
        "overrides": overrides,
        "growth_mb_per_1000_frames_second_half": growth_mb_per_1000_frames(samples),
        "samples": [dataclasses.asdict(s) for s in samples],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(samples))
    print(
        f"\nRSS growth over the second half: {result['growth_mb_per_1000_frames_second_half']:.2f} MB per 1000 "
        f"frames; {samples[-1].tracked}/{samples[-1].frames} frames tracked"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10000)
    p.add_argument(
        "--loop-frames",
        type=int,
        default=301,
        help="frames rendered for one lap (the last repeats the first, so a lap replays loop-frames - 1 of them)",
    )
    p.add_argument("--max-keyframes", type=int, default=20, help="the sliding window (mapping.max_keyframes)")
    p.add_argument("--every", type=int, default=500, help="sample every this many frames")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--cache", type=Path, default=None, help="synthetic sequence cache (default ~/.cache/slam)")
    p.add_argument("--out", type=Path, default=Path("/tmp/slam-memory"))
    p.add_argument("--quiet", action="store_true", help="no progress rows on stderr")
    return p


if __name__ == "__main__":
    sys.exit(main())
