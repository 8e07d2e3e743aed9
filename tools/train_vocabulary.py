"""Regenerate the shipped ORB vocabulary (slam/place/data/orb_vocab.npz) from images the project renders itself.

Only the synthetic renderer's images are used (textured rooms, scene seeds 100-107 -- the tests use seeds
0 and 1 -- each seen along the orbit, loop and line trajectories), never the shared benchmark data: its
licences do not allow shipping what is derived from it, and the quality measured on it would leak.
Every step is seeded, so the same code gives the same vocabulary.

    .venv/bin/python tools/train_vocabulary.py [--out slam/place/data/orb_vocab.npz] [--k 10] [--levels 4] [--seed 7]
        [--features orb] [--weights FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENE_SEEDS = tuple(range(100, 108))
TRAJECTORIES = ("orbit", "loop", "line")
DURATION_S = 24.0
EVERY_S = 0.4  # one view per 0.4 s of each trajectory: 60 views, mostly of different parts of the room
N_FEATURES = 1000
MAX_DESCRIPTORS = 600_000
TRAINING_SEED = 7


def rendered_views() -> Iterator[np.ndarray]:
    """640x480 BGR views of each scene along each trajectory (deterministic)."""
    from slam.synthetic import Renderer, build_scene, make_trajectory, synthetic_camera

    times = np.arange(0.0, DURATION_S, EVERY_S)
    for seed in SCENE_SEEDS:
        renderer = Renderer(build_scene(seed), synthetic_camera())
        for kind in TRAJECTORIES:
            for pose in make_trajectory(kind, times, seed):
                yield renderer.render(pose)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "slam" / "place" / "data" / "orb_vocab.npz"))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--seed", type=int, default=TRAINING_SEED, help="k-means seed (the shipped file: 7)")
    parser.add_argument("--features", default="orb", help="feature type (the shipped file: orb)")
    parser.add_argument("--weights", default=None, help="weights of a learned extractor")
    args = parser.parse_args(argv)

    from slam.config import FeaturesConfig
    from slam.place.training import extract_descriptors
    from slam.place.vocabulary import train_vocabulary

    started = time.perf_counter()
    n_views = len(SCENE_SEEDS) * len(TRAJECTORIES) * len(np.arange(0.0, DURATION_S, EVERY_S))
    features = FeaturesConfig(type=args.features, n_features=N_FEATURES, weights=args.weights)

    def progress(done: int) -> None:
        if done % 100 == 0 or done == n_views:
            print(
                f"rendered and extracted {done}/{n_views} views ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )

    descriptors = extract_descriptors(rendered_views(), features, progress)
    info = {
        "trained_on": f"slam.synthetic renders: scene seeds {SCENE_SEEDS[0]}-{SCENE_SEEDS[-1]}, trajectories "
        f"{', '.join(TRAJECTORIES)}, one 640x480 view every {EVERY_S} s of {DURATION_S:.0f} s",
        "features": args.features,
        "n_features": N_FEATURES,
        "tool": "tools/train_vocabulary.py",
    }
    vocab = train_vocabulary(descriptors, args.k, args.levels, MAX_DESCRIPTORS, args.seed, info)
    vocab.save(args.out)
    print(
        f"{vocab.n_words} words from {vocab.info['descriptors']} descriptors of {len(descriptors)} views "
        f"({vocab.info['clustered']} clustered) in {time.perf_counter() - started:.0f} s -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
