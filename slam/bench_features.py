"""`slam bench-features`: local features judged by the relative pose they give (Jin et al., IJCV 2021).

Frame pairs a few frames apart from sequences with ground truth; per pair: extract, match, estimate the
essential matrix (MAGSAC++ or RANSAC), recover (R, t) and compare with the ground-truth relative pose.
The error of a pair is the larger of the rotation and translation-direction angles; mAA is the mean over
thresholds 1..10 degrees of the share of pairs under the threshold. A pair with no pose counts as 180.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from slam.config import EstimationConfig, FeaturesConfig, load_config
from slam.errors import SlamInputError
from slam.features import create_extractor
from slam.features.base import Features
from slam.features.estimation import essential, mean_average_accuracy, rotation_error_deg, translation_error_deg
from slam.features.matchers import BruteForceMatcher, LighterGlueMatcher, Matches
from slam.io import open_sequence
from slam.trajectory import Trajectory

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SEQUENCES = {  # name -> (folder under the data root, config giving its camera and reader)
    "tum-teddy": ("tum/rgbd_dataset_freiburg3_teddy", "tum_fr3_mono.yaml"),
    "kitti-07": ("kitti/sequences/07", "kitti_04-12_mono.yaml"),
}
MATCHERS = ("mnn", "ratio", "lighterglue")  # mutual nearest neighbour; + Lowe's ratio 0.8; XFeat only
ESTIMATORS = ("magsac", "ransac")
BEGIN, END = "<!-- bench-features:begin -->", "<!-- bench-features:end -->"


@dataclass
class PairSet:
    """Image pairs of one sequence with their ground-truth relative poses (x2 = R x1 + t)."""

    name: str
    K: np.ndarray
    size: tuple[int, int]  # (width, height)
    frames: dict[int, np.ndarray]  # frame index -> gray image
    pairs: list[tuple[int, int]]
    gaps: list[int]
    R_gt: list[np.ndarray]
    t_gt: list[np.ndarray]


@dataclass
class Row:
    extractor: str
    matcher: str
    estimator: str
    errors: dict[str, list[float]] = field(default_factory=dict)  # sequence -> per-pair error (deg)
    gaps: list[int] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)
    inliers: list[int] = field(default_factory=list)
    extract_ms: float = 0.0
    match_ms: list[float] = field(default_factory=list)


def load_pairs(data_root: Path, name: str, gaps: list[int], per_gap: int) -> PairSet:
    folder, config_name = SEQUENCES[name]
    path = data_root / folder
    sequence = open_sequence(path, load_config(CONFIGS / config_name))
    if sequence.groundtruth is None:
        raise SlamInputError("sequence has no ground truth", path)
    poses, valid = _poses_at(sequence.groundtruth, sequence.timestamps)
    candidates = np.flatnonzero(valid)
    pairs, pair_gaps = [], []
    for gap in gaps:
        starts = [i for i in candidates if i + gap < len(valid) and valid[i + gap]]
        if not starts:
            continue
        pick = np.unique(np.round(np.linspace(0, len(starts) - 1, per_gap)).astype(int))
        pairs += [(int(starts[k]), int(starts[k]) + gap) for k in pick]
        pair_gaps += [gap] * len(pick)
    frames = {i: sequence.load(i).gray for i in sorted({i for p in pairs for i in p})}
    R_gt, t_gt = [], []
    for i, j in pairs:
        T_21 = np.linalg.inv(poses[j]) @ poses[i]  # camera 1 -> camera 2
        R_gt.append(T_21[:3, :3])
        t_gt.append(T_21[:3, 3])
    cam = sequence.camera
    return PairSet(name, cam.K, (cam.width, cam.height), frames, pairs, pair_gaps, R_gt, t_gt)


def _poses_at(gt: Trajectory, stamps: np.ndarray, max_diff: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth pose nearest to each frame time, and whether one lies within max_diff seconds."""
    k = np.clip(np.searchsorted(gt.timestamps, stamps), 1, len(gt.timestamps) - 1)
    k = np.where(np.abs(gt.timestamps[k - 1] - stamps) < np.abs(gt.timestamps[k] - stamps), k - 1, k)
    return gt.poses[k], np.abs(gt.timestamps[k] - stamps) <= max_diff


def extract_all(extractor, frames: dict[int, np.ndarray]) -> tuple[dict[int, Features], list[float]]:
    """Features of every frame and the milliseconds each took (one image per call, after a warm-up)."""
    first = next(iter(frames.values()))
    extractor.extract(first)
    out, ms = {}, []
    for i, image in frames.items():
        start = time.perf_counter()
        out[i] = extractor.extract(image)
        ms.append(1000.0 * (time.perf_counter() - start))
    return out, ms


def evaluate_pairs(
    pairs: PairSet,
    features: dict[int, Features],
    matcher,
    estimators: list[str],
    cfg: EstimationConfig,
    rows: dict[str, Row],
) -> None:
    """Match each pair once, estimate with every estimator, append errors / counts to rows[estimator]."""
    for (i, j), R_gt, t_gt, gap in zip(pairs.pairs, pairs.R_gt, pairs.t_gt, pairs.gaps):
        f1, f2 = features[i], features[j]
        start = time.perf_counter()
        m: Matches = matcher.match(f1, f2, pairs.size, pairs.size)
        match_ms = 1000.0 * (time.perf_counter() - start)
        for name in estimators:
            row = rows[name]
            pose = essential(f1.keypoints[m.idx1], f2.keypoints[m.idx2], pairs.K, replace(cfg, method=name))
            error = (
                180.0 if pose is None else max(rotation_error_deg(pose.R, R_gt), translation_error_deg(pose.t, t_gt))
            )
            row.errors.setdefault(pairs.name, []).append(error)
            row.gaps.append(gap)
            row.matches.append(len(m))
            row.inliers.append(0 if pose is None else int(pose.inliers.sum()))
            row.match_ms.append(match_ms)


def _matcher(name: str, device: str):
    if name == "mnn":
        return BruteForceMatcher(ratio=None, mutual=True)
    if name == "ratio":
        return BruteForceMatcher(ratio=0.8, mutual=True)
    return LighterGlueMatcher(device)


def combinations(extractors: list[str], matchers: list[str]) -> list[tuple[str, str]]:
    """Extractor x matcher pairs that make sense: LighterGlue only for XFeat (its weights are XFeat's)."""
    return [(e, m) for e, m in itertools.product(extractors, matchers) if m != "lighterglue" or e == "xfeat"]


def run_benchmark(
    data_root: Path,
    extractors: list[str],
    matchers: list[str],
    estimators: list[str],
    gaps: list[int],
    per_gap: int,
    n_features: int,
    weights: str | None,
    device: str,
    cfg: EstimationConfig,
    log: Callable[[str], None] = print,
) -> list[Row]:
    pair_sets = [load_pairs(data_root, name, gaps, per_gap) for name in SEQUENCES]
    log(f"{sum(len(p.pairs) for p in pair_sets)} pairs, {sum(len(p.frames) for p in pair_sets)} images")
    rows: list[Row] = []
    for extractor_name in extractors:
        # the weights file is SuperPoint's; XFeat's come from its package
        own = weights if extractor_name == "superpoint" else None
        fcfg = FeaturesConfig(type=extractor_name, n_features=n_features, weights=own, device=device)
        extractor = create_extractor(fcfg)
        chosen = [m for e, m in combinations([extractor_name], matchers)]
        by_matcher = {m: {e: Row(extractor_name, m, e) for e in estimators} for m in chosen}
        ms = []
        for pairs in pair_sets:
            features, ms_per_image = extract_all(extractor, pairs.frames)
            ms += ms_per_image
            for matcher_name in chosen:
                evaluate_pairs(
                    pairs, features, _matcher(matcher_name, device), estimators, cfg, by_matcher[matcher_name]
                )
        for group in by_matcher.values():
            for row in group.values():
                row.extract_ms = float(np.median(ms))  # the median: robust to other processes on a shared CPU
                rows.append(row)
                log(_row_cells(row, [p.name for p in pair_sets]))
    return rows


def _maa(errors: list[float]) -> float:
    return mean_average_accuracy(np.asarray(errors))


def _row_cells(row: Row, sequences: list[str]) -> str:
    all_errors = [e for s in sequences for e in row.errors.get(s, [])]
    cells = [row.extractor, row.matcher, row.estimator]
    cells += [f"{_maa(row.errors.get(s, [])):.3f}" for s in sequences] + [f"**{_maa(all_errors):.3f}**"]
    cells += [
        f"{np.mean(row.matches):.0f}",
        f"{np.mean(row.inliers):.0f}",
        f"{row.extract_ms:.0f}",
        f"{np.median(row.match_ms):.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def format_tables(rows: list[Row], gaps: list[int]) -> str:
    sequences = list(SEQUENCES)
    head = ["extractor", "matcher", "estimator"] + [f"mAA {s}" for s in sequences]
    head += ["mAA all", "matches", "inliers", "extract ms/img (median)", "match ms/pair (median)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [_row_cells(row, sequences) for row in rows]
    lines += ["", "mAA by frame gap (both sequences):", ""]
    gap_head = ["extractor", "matcher", "estimator"] + [f"gap {g}" for g in gaps]
    lines += ["| " + " | ".join(gap_head) + " |", "|" + "---|" * len(gap_head)]
    for row in rows:
        errors = np.array([e for s in sequences for e in row.errors.get(s, [])])
        row_gaps = np.array(row.gaps)
        cells = [row.extractor, row.matcher, row.estimator]
        cells += [f"{_maa(errors[row_gaps == g]):.3f}" for g in gaps]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(path: Path, tables: str, header: str) -> None:
    """Put the tables between the markers of an existing document, or write a new one."""
    block = f"{BEGIN}\n{header}\n\n{tables}\n{END}"
    if path.is_file():
        text = path.read_text()
        if BEGIN in text and END in text:
            before, rest = text.split(BEGIN, 1)
            after = rest.split(END, 1)[1]
            path.write_text(before + block + after)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Local features: relative-pose benchmark\n\n{block}\n")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(args) -> int:
    """The `slam bench-features` command (arguments defined in slam/cli.py)."""
    from slam.features import EXTRACTORS

    extractors, matchers, estimators = _csv(args.extractors), _csv(args.matchers), _csv(args.estimators)
    for name, chosen, known in (
        ("extractor", extractors, EXTRACTORS),
        ("matcher", matchers, MATCHERS),
        ("estimator", estimators, ESTIMATORS),
    ):
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise SlamInputError(f"unknown {name} '{unknown[0]}' (known: {', '.join(known)})")
    gaps = [int(g) for g in _csv(args.gaps)]
    data = Path(args.data)
    if not data.is_dir():
        raise SlamInputError("data folder not found", data)
    cfg = EstimationConfig(threshold_px=args.threshold)
    start = time.perf_counter()
    rows = run_benchmark(
        data, extractors, matchers, estimators, gaps, args.pairs, args.n_features, args.weights, args.device, cfg
    )
    header = (
        f"{args.pairs} pairs per gap and sequence, gaps {', '.join(map(str, gaps))}; {args.n_features} "
        f"features; essential matrix threshold {args.threshold:g} px; run took "
        f"{time.perf_counter() - start:.0f} s."
    )
    write_report(Path(args.out), format_tables(rows, gaps), header)
    print(f"tables written to {args.out}")
    return 0
