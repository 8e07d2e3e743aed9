"""Trajectory accuracy against ground truth (ATE, RPE) computed with evo, plus a JSON + PNG report.

Only `evo.core` is imported: it never reads or writes ~/.evo (that is `evo.tools.settings`, which
the evo command-line tools pull in), so evaluation works with a read-only or missing HOME.

Conventions:
- `scale` is the factor applied to the ESTIMATE to match the ground truth (evo's Umeyama output):
  an estimate that is 2.5x too large gives scale 0.4. It is 1.0 for se3 alignment.
- RPE over 1 s: evo 1.38's RPE accepts deltas in frames, metres and angles but not seconds, so
  pose pairs ~1 s apart are chosen here by timestamp (all start poses, end pose nearest to
  t + 1 s, within 10 % of the delta like evo's `rel_delta_tol`) and each pair's error is evo's
  `RPE.rpe_base`. Shorter trajectories give NaN (null in JSON).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from evo.core import metrics, sync
from evo.core.geometry import GeometryException
from evo.core.trajectory import PoseTrajectory3D

from slam.errors import SlamInputError
from slam.trajectory import Trajectory, read_tum, write_text_atomic

ALIGNMENTS = ("se3", "sim3")
MIN_MATCHED = 3
RPE_DELTA_S = 1.0
RPE_DELTA_REL_TOL = 0.1


@dataclass(eq=False)
class EvalResult:
    align: str  # "se3" or "sim3"
    matched: int  # associated (ground truth, estimate) pose pairs
    ate_rmse_m: float
    ate_mean_m: float
    ate_median_m: float
    ate_max_m: float
    scale: float  # applied to the estimate; 1.0 for se3
    rpe_trans_rmse_m: float  # consecutive matched poses
    rpe_rot_rmse_deg: float  # consecutive matched poses
    rpe_1s_trans_rmse_m: float  # pose pairs ~1 s apart; NaN if the trajectory is shorter
    timestamps: np.ndarray  # (M,) ground-truth timestamps of the matched pairs
    gt_xyz: np.ndarray  # (M,3)
    est_xyz_aligned: np.ndarray  # (M,3)
    ate_errors: np.ndarray  # (M,) metres

    def to_json_dict(self) -> dict[str, str | int | float | None]:
        """The scalar fields; NaN becomes None so the JSON stays standard."""
        out: dict[str, str | int | float | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[f.name] = value
        return out


def evaluate(gt: Trajectory, est: Trajectory, align: str = "se3", max_diff: float = 0.02) -> EvalResult:
    """Associate `est` to `gt` by timestamp, align it (se3 or sim3) and compute ATE and RPE."""
    if align not in ALIGNMENTS:
        raise SlamInputError(f"unknown alignment '{align}', expected one of {', '.join(ALIGNMENTS)}")
    if not max_diff > 0:
        raise SlamInputError(f"timestamp tolerance must be positive, got {max_diff}")
    gt_sync, est_sync = _associate(gt, est, max_diff)
    scale = _align(est_sync, gt_sync, with_scale=align == "sim3")

    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((gt_sync, est_sync))
    stats = ape.get_all_statistics()
    return EvalResult(
        align=align,
        matched=int(gt_sync.num_poses),
        ate_rmse_m=float(stats["rmse"]),
        ate_mean_m=float(stats["mean"]),
        ate_median_m=float(stats["median"]),
        ate_max_m=float(stats["max"]),
        scale=float(scale),
        rpe_trans_rmse_m=_rpe_frames(gt_sync, est_sync, metrics.PoseRelation.translation_part),
        rpe_rot_rmse_deg=_rpe_frames(gt_sync, est_sync, metrics.PoseRelation.rotation_angle_deg),
        rpe_1s_trans_rmse_m=_rpe_seconds(gt_sync, est_sync, RPE_DELTA_S),
        timestamps=np.array(gt_sync.timestamps, dtype=float),
        gt_xyz=np.array(gt_sync.positions_xyz, dtype=float),
        est_xyz_aligned=np.array(est_sync.positions_xyz, dtype=float),
        ate_errors=np.array(ape.error, dtype=float),
    )


def evaluate_files(
    gt_path: str | Path,
    est_path: str | Path,
    align: str = "se3",
    out_dir: str | Path | None = None,
    max_diff: float = 0.02,
) -> EvalResult:
    """Evaluate two TUM trajectory files; with `out_dir`, also write eval.json and the plots."""
    gt_path, est_path = Path(gt_path), Path(est_path)
    gt, est = read_tum(gt_path), read_tum(est_path)
    try:
        result = evaluate(gt, est, align=align, max_diff=max_diff)
    except SlamInputError as e:
        if e.path is not None:
            raise
        raise SlamInputError(f"{e.problem} (ground truth: {gt_path})", est_path) from None
    if out_dir is not None:
        write_report(result, Path(out_dir), title=f"{est_path.name} vs {gt_path.name}")
    return result


def format_summary(result: EvalResult) -> str:
    """A machine-readable first line `ATE_RMSE_m=<value>` and one human-readable line."""
    rpe_1s = "n/a (shorter than 1 s)" if math.isnan(result.rpe_1s_trans_rmse_m) else (
        f"{result.rpe_1s_trans_rmse_m:.4f} m"
    )
    human = (
        f"ATE {result.align} over {result.matched} poses: rmse {result.ate_rmse_m:.4f} m, "
        f"mean {result.ate_mean_m:.4f} m, median {result.ate_median_m:.4f} m, max {result.ate_max_m:.4f} m; "
        f"RPE per frame {result.rpe_trans_rmse_m:.4f} m / {result.rpe_rot_rmse_deg:.3f} deg, "
        f"per 1 s {rpe_1s}; scale {result.scale:.4f}"
    )
    return f"ATE_RMSE_m={result.ate_rmse_m:.6f}\n{human}"


def write_report(result: EvalResult, out_dir: Path, title: str = "") -> dict[str, Path]:
    """Write out_dir/eval.json, trajectory_xy.png and ate_over_time.png; return their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "eval.json",
        "trajectory": out_dir / "trajectory_xy.png",
        "ate": out_dir / "ate_over_time.png",
    }
    payload = {"title": title, **result.to_json_dict()}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, allow_nan=False) + "\n")
    _plot_trajectory(result, paths["trajectory"], title)
    _plot_ate(result, paths["ate"], title)
    return paths


def _to_evo(traj: Trajectory, name: str) -> PoseTrajectory3D:
    """Time-ordered evo copy: association and the 1 s RPE pairing both rely on sorted stamps."""
    order = np.argsort(traj.timestamps, kind="stable")
    return PoseTrajectory3D(
        poses_se3=[np.asarray(p, dtype=float) for p in traj.poses[order]],
        timestamps=np.asarray(traj.timestamps, dtype=float)[order],
        name=name,
    )


def _associate(gt: Trajectory, est: Trajectory, max_diff: float) -> tuple[PoseTrajectory3D, PoseTrajectory3D]:
    """Synchronised copies (same length, nearest timestamps); too few pairs is a user error."""
    matched = 0
    if len(gt) and len(est):
        try:
            gt_sync, est_sync = sync.associate_trajectories(
                _to_evo(gt, "ground truth"), _to_evo(est, "estimate"), max_diff=max_diff
            )
            matched = gt_sync.num_poses
        except sync.SyncException:
            matched = 0  # evo raises when nothing matches; report it like any too-small overlap
    if matched < MIN_MATCHED:
        raise SlamInputError(
            f"only {matched} poses matched within {max_diff:g} s (ground truth has {len(gt)}, "
            f"estimate has {len(est)}; at least {MIN_MATCHED} needed): check both use the same time base"
        )
    return gt_sync, est_sync


def _align(est: PoseTrajectory3D, gt: PoseTrajectory3D, with_scale: bool) -> float:
    """Align `est` onto `gt` in place (Umeyama via evo); return the scale applied to `est`."""
    try:
        _, _, scale = est.align(gt, correct_scale=with_scale)
    except GeometryException:
        raise SlamInputError(
            f"cannot align: the {est.num_poses} matched positions are degenerate (one point or a straight line)"
        ) from None
    return float(scale)


def _rpe_frames(gt: PoseTrajectory3D, est: PoseTrajectory3D, relation: metrics.PoseRelation) -> float:
    rpe = metrics.RPE(relation, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
    rpe.process_data((gt, est))
    return float(rpe.get_statistic(metrics.StatisticsType.rmse))


def pairs_about_seconds(
    timestamps: np.ndarray, delta_s: float, rel_tol: float = RPE_DELTA_REL_TOL
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) with t_j the timestamp nearest t_i + delta_s, kept if within rel_tol * delta_s."""
    t = np.asarray(timestamps, dtype=float)
    if len(t) < 2:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    target = t + delta_s
    right = np.clip(np.searchsorted(t, target), 1, len(t) - 1)
    left = right - 1
    j = np.where(np.abs(t[left] - target) <= np.abs(t[right] - target), left, right)
    keep = (np.abs(t[j] - target) <= rel_tol * delta_s) & (j > np.arange(len(t)))
    return np.flatnonzero(keep), j[keep]


def _rpe_seconds(gt: PoseTrajectory3D, est: PoseTrajectory3D, delta_s: float) -> float:
    """Translational RPE RMSE over pose pairs ~delta_s apart (evo cannot pair by seconds)."""
    first, second = pairs_about_seconds(gt.timestamps, delta_s)
    if len(first) == 0:
        return float("nan")
    q, p = gt.poses_se3, est.poses_se3
    errors = [
        np.linalg.norm(metrics.RPE.rpe_base(q[i], q[j], p[i], p[j])[:3, 3])
        for i, j in zip(first, second, strict=True)
    ]
    return float(np.sqrt(np.mean(np.square(errors))))


def _new_figure(size: tuple[float, float]):
    """A Figure bound to its own Agg canvas: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plot_trajectory(result: EvalResult, path: Path, title: str) -> None:
    """Top view in the plane of the two largest ground-truth extents (x-z for a car camera)."""
    extents = np.ptp(result.gt_xyz, axis=0)
    a, b = sorted(np.argsort(extents)[-2:])
    fig = _new_figure((6.4, 6.4))
    ax = fig.add_subplot()
    ax.plot(result.gt_xyz[:, a], result.gt_xyz[:, b], "--", color="0.4", label="ground truth")
    ax.plot(result.est_xyz_aligned[:, a], result.est_xyz_aligned[:, b], color="tab:blue",
            label=f"estimate ({result.align}-aligned)")
    ax.plot(result.gt_xyz[0, a], result.gt_xyz[0, b], "o", color="tab:green", label="start")
    ax.set_xlabel(f"{'xyz'[a]} [m]")
    ax.set_ylabel(f"{'xyz'[b]} [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(title or f"trajectory, ATE RMSE {result.ate_rmse_m:.3f} m")
    fig.savefig(path)


def _plot_ate(result: EvalResult, path: Path, title: str) -> None:
    fig = _new_figure((8.0, 4.0))
    ax = fig.add_subplot()
    t = result.timestamps - result.timestamps[0]
    ax.plot(t, result.ate_errors, color="tab:red", label="ATE")
    ax.axhline(result.ate_rmse_m, color="0.3", linestyle="--", label=f"RMSE {result.ate_rmse_m:.4f} m")
    ax.set_xlabel("time since first matched pose [s]")
    ax.set_ylabel("absolute position error [m]")
    ax.set_ylim(bottom=0.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    ax.set_title(title or "ATE over time")
    fig.tight_layout()
    fig.savefig(path)
