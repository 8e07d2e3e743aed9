"""Figures of a benchmark: ATE per sequence and method (bars), tracking time per frame over each sequence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slam.bench.results import Cell


def write_plots(cells: list[Cell], out_dir: Path) -> list[Path]:
    """ate.png and one tracking_ms_<sequence>.png per sequence with timings; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_ate(cells, out_dir / "ate.png")]
    for sequence in dict.fromkeys(c.sequence for c in cells):
        path = plot_tracking_ms(
            [c for c in cells if c.sequence == sequence], sequence, out_dir / f"tracking_ms_{sequence}.png"
        )
        if path is not None:
            paths.append(path)
    return paths


def _figure(size: tuple[float, float]):
    """A Figure on its own Agg canvas: no pyplot state, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_ate(cells: list[Cell], path: Path) -> Path:
    """Median ATE (log scale) with the min-max spread; a failed cell is marked on the axis, a skipped one left out."""
    sequences = list(dict.fromkeys(c.sequence for c in cells))
    methods = list(dict.fromkeys(c.method for c in cells))
    from matplotlib.patches import Patch

    width = 0.8 / max(1, len(methods))
    fig = _figure((max(6.0, 1.6 * len(sequences) * max(1, len(methods)) ** 0.5), 4.5))
    ax = fig.add_subplot()
    for j, method in enumerate(methods):
        x, median, low, high, failed_x = [], [], [], [], []
        for i, sequence in enumerate(sequences):
            cell = next((c for c in cells if c.sequence == sequence and c.method == method), None)
            s = cell.summary.get("ate_rmse_m") if cell is not None else None
            pos = i - 0.4 + width * (j + 0.5)
            if s:
                x.append(pos)
                median.append(s["median"])
                low.append(s["median"] - s["min"])
                high.append(s["max"] - s["median"])
            elif cell is not None and cell.status in ("failed", "partial"):
                failed_x.append(pos)
        ax.bar(x, median, width, yerr=[low, high], capsize=3, color=f"C{j}")
        if failed_x:  # drawn on the x axis (axes coordinates in y): a log axis has no zero
            ax.plot(
                failed_x,
                [0.0] * len(failed_x),
                "x",
                color=f"C{j}",
                markersize=9,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )
    ax.set_yscale("log")
    ax.set_xticks(range(len(sequences)), sequences, rotation=20, ha="right")
    ax.set_ylabel("ATE RMSE [m] (median, min-max)")
    ax.set_title("ATE per sequence and method (x on the axis: failed)")
    ax.grid(True, axis="y", alpha=0.3)
    # Legend from patches: a method with no bar at all (every run failed) still gets its own colour.
    ax.legend([Patch(color=f"C{j}") for j in range(len(methods))], methods, loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_tracking_ms(cells: list[Cell], sequence: str, path: Path) -> Path | None:
    """Per method, the per-frame median over its successful runs of the tracking time; None if no timings."""
    fig = _figure((8.0, 4.0))
    ax = fig.add_subplot()
    drawn = False
    for cell in cells:
        series = [np.asarray(r.timings_ms) for r in cell.ok_runs if r.timings_ms]
        if not series:
            continue
        n = min(len(s) for s in series)
        ax.plot(
            np.arange(n),
            np.median(np.stack([s[:n] for s in series]), axis=0),
            linewidth=1.0,
            label=f"{cell.method} ({len(series)} runs)",
        )
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("frame")
    ax.set_ylabel("tracking time [ms] (median over runs)")
    ax.set_yscale("log")
    ax.set_title(f"{sequence}: tracking time per frame")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path
