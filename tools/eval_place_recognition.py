"""Place-recognition quality of a vocabulary on real sequences with ground truth (read-only shared data).

Every frame becomes a database entry (ORB features as the sequence's config extracts them); each frame
then queries the database with every frame closer than --gap frames to it excluded. The top candidate
is right when its ground-truth camera pose lies within a distance and angle of the query's (see CASES).
Reported over the queries that have at least one right candidate: how often the top candidate (after
ORB-SLAM's 80%-of-common-words filter) is right, how often a right one is among the top 5, the random
baseline (the expected rate of a uniformly drawn candidate), and the transform time per image; then
the keyframe database's add / query / remove times.

    .venv/bin/python tools/eval_place_recognition.py [--vocab FILE] [--data ../shared/data]
        [--only tum|tum-loose|kitti|synthetic-loop] [--set features.type=superpoint --set features.weights=FILE]
        [--float-timing]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    name: str
    folder: str  # under the data root; "synthetic-loop": the rendered sequence (cached in ~/.cache/slam)
    config: str  # under configs/
    gap: int  # frames nearer than this to the query are excluded
    max_dist: float  # metres
    max_angle: float  # degrees


CASES = {
    "tum": Case("TUM fr3 teddy", "tum/rgbd_dataset_freiburg3_teddy", "tum_fr3_mono.yaml", 30, 0.3, 20.0),
    # The strict TUM criterion leaves only 31 queries, in two runs of consecutive frames; a looser one counts
    # nearly every frame.
    "tum-loose": Case("TUM fr3 teddy", "tum/rgbd_dataset_freiburg3_teddy", "tum_fr3_mono.yaml", 30, 0.5, 30.0),
    # The KITTI 07 chunk never revisits a place: the task there is to find, among all 160 views of 90 m of
    # road, one within 10 m of the query that is not among its 9 neighbours on either side (about 5 m).
    "kitti": Case("KITTI 07", "kitti/sequences/07", "kitti_04-12_mono.yaml", 10, 10.0, 20.0),
    # `slam synth --trajectory loop --frames 300` (scene seed 0, not in the shipped vocabulary's training
    # set): the end of the loop revisits its start.
    "synthetic-loop": Case("synthetic loop", "synthetic-loop", "synthetic_mono.yaml", 60, 0.3, 20.0),
}


def load_frames(case: Case, data_root: Path, overrides: list[str]):
    """Gray images and ground-truth camera-to-world poses of the frames that have ground truth."""
    from slam.config import load_config
    from slam.io import open_sequence

    config = load_config(REPO_ROOT / "configs" / case.config, overrides)
    if case.folder == "synthetic-loop":
        from slam.synthetic import ensure_sequence

        folder = ensure_sequence(frames=300, seed=0, trajectory="loop")
    else:
        folder = data_root / case.folder
    seq = open_sequence(folder, config)
    gt = seq.groundtruth
    images, poses = [], []
    for i in range(len(seq)):
        j = int(np.argmin(np.abs(gt.timestamps - seq.timestamps[i])))
        if abs(gt.timestamps[j] - seq.timestamps[i]) <= 0.02:
            images.append(seq.load(i).gray)
            poses.append(gt.poses[j])
    return images, np.array(poses), config.features


def near_matrix(poses: np.ndarray, max_dist: float, max_angle_deg: float) -> np.ndarray:
    dist = np.linalg.norm(poses[:, None, :3, 3] - poses[None, :, :3, 3], axis=2)
    rel = np.einsum("iba,jbc->ijac", poses[:, :3, :3], poses[:, :3, :3])  # R_i^T R_j
    cos = np.clip((np.trace(rel, axis1=2, axis2=3) - 1) / 2, -1, 1)
    return (dist <= max_dist) & (np.degrees(np.arccos(cos)) <= max_angle_deg)


def evaluate(case: Case, data_root: Path, vocab, overrides: list[str], cache: dict) -> dict:
    from slam.features import create_extractor
    from slam.place import KeyframeDatabase

    if case.folder not in cache:  # features once per sequence
        images, poses, features = load_frames(case, data_root, overrides)
        extractor = create_extractor(features)
        cache[case.folder] = [extractor.extract(image).descriptors for image in images], poses
    descriptors, poses = cache[case.folder]
    vocab.transform(descriptors[0])  # compile the kernels before timing
    times, bows = [], []
    for d in descriptors:
        t0 = time.perf_counter()
        bows.append(vocab.transform(d).bow)
        times.append(time.perf_counter() - t0)
    db = KeyframeDatabase(vocab.n_words)
    for i, bow in enumerate(bows):
        db.add(i, bow)
    near = near_matrix(poses, case.max_dist, case.max_angle)
    index = np.arange(len(bows))
    hits = {"top1": 0, "top5": 0}
    chance, answerable = [], 0
    for i, bow in enumerate(bows):
        allowed = np.abs(index - i) >= case.gap
        right = near[i] & allowed
        if not right.any():
            continue
        answerable += 1
        chance.append(right.sum() / allowed.sum())
        exclude = index[~allowed].tolist()
        top = db.query(bow, max_results=5, exclude=exclude, min_common_ratio=0.8)
        hits["top1"] += bool(len(top) and right[top.kf_ids[0]])
        hits["top5"] += bool(right[top.kf_ids].any())
    return {
        "case": case.name,
        "frames": len(bows),
        "answerable": answerable,
        "top1": hits["top1"] / max(answerable, 1),
        "top5": hits["top5"] / max(answerable, 1),
        "random": float(np.mean(chance)) if chance else float("nan"),
        "features_per_image": float(np.mean([len(d) for d in descriptors])),
        "transform_ms_p50": 1e3 * float(np.median(times)),
        "transform_ms_max": 1e3 * float(np.max(times)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", default=None, help="vocabulary file (default: the shipped ORB vocabulary)")
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--only", choices=list(CASES), action="append")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="features.KEY=VALUE",
        help="feature settings (e.g. features.type=superpoint features.weights=FILE)",
    )
    parser.add_argument(
        "--float-timing", action="store_true", help="also time float vocabularies on 64-D and 256-D unit vectors"
    )
    args = parser.parse_args(argv)

    from slam.place import load_vocabulary

    vocab = load_vocabulary(args.vocab)
    print(f"vocabulary: {vocab.source} ({vocab.n_words} words, k={vocab.branching}, levels={vocab.levels})")
    print(
        "| sequence | queries with a right candidate | top-1 right | a right one in the top 5 | "
        "random | transform ms p50 / max |"
    )
    print("|---|---|---|---|---|---|")
    cache: dict = {}
    for key in args.only or list(CASES):
        case = CASES[key]
        r = evaluate(case, Path(args.data), vocab, args.overrides, cache)
        print(
            f"| {r['case']}: >= {case.gap} frames apart, right within {case.max_dist} m / {case.max_angle:.0f} deg | "
            f"{r['answerable']}/{r['frames']} | {100 * r['top1']:.1f}% | {100 * r['top5']:.1f}% | "
            f"{100 * r['random']:.1f}% | {r['transform_ms_p50']:.2f} / {r['transform_ms_max']:.2f} "
            f"({r['features_per_image']:.0f} features) |"
        )
    descriptors = next(iter(cache.values()))[0]
    bows = [vocab.bow(d) for d in descriptors]
    for n in (200, 1000):
        add, query, remove = time_database(bows, vocab.n_words, n)
        print(
            f"database of {n} keyframes (the first sequence's frames, repeated): add {add:.2f} ms, "
            f"query {query:.2f} ms, remove {remove:.2f} ms (p50)"
        )
    if args.float_timing:
        for dim in (64, 256):
            train_s, transform_ms = time_float(dim)
            print(
                f"float {dim}-D: training on 100k descriptors {train_s:.1f} s, transform of 1000 {transform_ms:.2f} ms"
            )
    return 0


def time_float(dim: int) -> tuple[float, float]:
    """Training seconds and median transform milliseconds (1000 descriptors) of a float vocabulary (k=10,
    levels=4) trained on 100k clustered unit vectors: SuperPoint / XFeat-sized rows."""
    from slam.place import train_vocabulary

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2000, dim))
    data = centres[rng.integers(0, 2000, 100_000)] + 0.3 * rng.normal(size=(100_000, dim))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    started = time.perf_counter()
    vocab = train_vocabulary(np.array_split(data, 100), branching=10, levels=4, seed=0)
    train_s = time.perf_counter() - started
    vocab.transform(data[:1000])
    return train_s, 1e3 * float(np.median([_timed(vocab.transform, data[:1000]) for _ in range(50)]))


def time_database(bows: list, n_words: int, n: int) -> tuple[float, float, float]:
    """Median milliseconds of KeyframeDatabase add / query (10 excluded) / remove with n keyframes."""
    from slam.place import KeyframeDatabase

    db = KeyframeDatabase(n_words)
    add = [_timed(db.add, i, bows[i % len(bows)]) for i in range(n)]
    query = [_timed(db.query, bows[i % len(bows)], None, range(i, i + 10)) for i in range(100)]
    remove = [_timed(db.remove, i) for i in range(100)]
    return tuple(1e3 * float(np.median(t)) for t in (add, query, remove))


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
