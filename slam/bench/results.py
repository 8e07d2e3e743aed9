"""Runs grouped into cells (sequence x method) with the median and spread of every metric; results.json."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slam.bench.jobs import RunRecord, Skip
from slam.bench.suite import Suite, Target
from slam.export import write_json

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cell:
    sequence: str
    method: str
    mode: str
    peer: str | None
    runs: list[RunRecord] = field(default_factory=list)
    skipped: str = ""  # why the cell was not run (mode not supported)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> median, min, max, n
    checks: list[dict[str, Any]] = field(default_factory=list)  # the sequence's targets on the medians

    @property
    def ok_runs(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "ok"]

    @property
    def status(self) -> str:
        """ok (every run), partial (some failed), failed (none ok), skipped (not run, or a dependency missing)."""
        ok = len(self.ok_runs)
        if self.skipped or (self.runs and all(r.status == "skipped" for r in self.runs)):
            return "skipped"
        if ok == len(self.runs):
            return "ok"
        return "partial" if ok else "failed"

    @property
    def targets_met(self) -> bool:
        """Every run ok and every target met (a cell without targets, or not run, has nothing to miss)."""
        if not self.checks:
            return True
        return self.status == "ok" and all(c["met"] for c in self.checks)

    @property
    def reason(self) -> str:
        """The skip reason, or the first failed run's error."""
        if self.skipped:
            return self.skipped
        bad = [r for r in self.runs if r.status != "ok"]
        return bad[0].error if bad else ""


def build_cells(suite: Suite, records: list[RunRecord], skips: list[Skip]) -> list[Cell]:
    """One cell per (sequence, method) in suite order, each with its runs and their aggregate."""
    by_key: dict[tuple[str, str], Cell] = {}
    cells = []
    targets: dict[str, tuple[Target, ...]] = {}
    for seq in suite.sequences:
        targets[seq.name] = seq.targets
        for method in suite.methods:
            cell = Cell(seq.name, method.name, seq.mode, method.peer)
            by_key[seq.name, method.name] = cell
            cells.append(cell)
    for record in records:
        by_key[record.sequence, record.method].runs.append(record)
    for skip in skips:
        by_key[skip.sequence, skip.method].skipped = skip.reason
    for cell in cells:
        cell.runs.sort(key=lambda r: r.run)
        cell.summary = aggregate([r.metrics for r in cell.ok_runs])
        if cell.status != "skipped":
            cell.checks = check_targets(targets[cell.sequence], cell.summary)
    return cells


def check_targets(targets: tuple[Target, ...], summary: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Each target against the median of its metric (missing: None, never met)."""
    checks = []
    for t in targets:
        median = summary.get(t.metric, {}).get("median")
        checks.append({"metric": t.metric, "op": t.op, "bound": t.bound, "median": median, "met": t.met_by(median)})
    return checks


def aggregate(metric_dicts: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median, min, max and count of every finite numeric metric (bools, strings, None and NaN skipped)."""
    values: dict[str, list[float]] = {}
    for metrics in metric_dicts:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values.setdefault(key, []).append(float(value))
    return {
        key: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} for key, v in values.items()
    }


def results_document(suite: Suite, cells: list[Cell], header: dict[str, Any]) -> dict[str, Any]:
    """results.json's content: the header (date, machine, command...) and every cell with its runs.

    Per-frame timings stay out (they are in each run's timings_ms.json) to keep the file readable.
    """
    return {**header, "suite": str(suite.path), "cells": [_cell_dict(c) for c in cells]}


def _cell_dict(cell: Cell) -> dict[str, Any]:
    runs = []
    for record in cell.runs:
        run = asdict(record)
        run.pop("timings_ms")
        runs.append(run)
    return {
        "sequence": cell.sequence,
        "method": cell.method,
        "mode": cell.mode,
        "peer": cell.peer,
        "status": cell.status,
        "reason": cell.reason,
        "ok_runs": len(cell.ok_runs),
        "runs": runs,
        "summary": cell.summary,
        "checks": cell.checks,
        "targets_met": cell.targets_met,
    }


def write_results(path: Path, document: dict[str, Any]) -> None:
    write_json(path, document)  # NaN becomes null: results.json stays standard JSON


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def git_revision() -> str | None:
    """HEAD's short commit, plus '+ uncommitted changes' when the tree differs (read-only git calls)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=30
        )
        if head.returncode != 0:
            return None
        dirty = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD"], cwd=REPO_ROOT, capture_output=True, env=env, timeout=30
            ).returncode
            != 0
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")
