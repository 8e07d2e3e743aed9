"""Benchmark runner for the SLAM core targets: accuracy (ATE), robustness (frames tracked) and speed.

Every run is its own `python -m slam run ... --quiet` process, one after another (never in parallel, so
runs do not share the CPU), each into its own output folder; its run.json is collected. With N runs per
case the report gives the median and the min-max spread of every metric and checks the case's targets
against the medians. Outputs: OUT/results.json, OUT/benchmark.md, and with --markdown FILE the section
between the core-benchmark markers in FILE (created, replaced or appended; the rest of FILE is kept).

    .venv/bin/python tools/benchmark_core.py [--runs 3] [--data-root ../shared/data] [--out /tmp/slam-bench]
        [--only NAME ...] [--markdown docs/benchmarks.md] [--timeout 1800] [--max-frames N] [--list]

Exit status: 0 when every run succeeded and every target was met, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from slam.bench.report import stat, tracked  # the same table cells as `slam bench`

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OUT = Path("/tmp/slam-bench")
START_MARKER = "<!-- core-benchmark:start -->"
END_MARKER = "<!-- core-benchmark:end -->"
DEFAULT_TIMEOUT_S = 1800.0
_ERROR_TAIL_CHARS = 400
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": lambda v, b: v <= b, ">=": lambda v, b: v >= b}


# ---------------------------------------------------------------- cases and targets


@dataclasses.dataclass(frozen=True)
class Target:
    """`metric op bound`, checked against the median over a case's successful runs."""

    metric: str
    op: str  # "<=" or ">="
    bound: float

    def met_by(self, value: float | None) -> bool:
        return value is not None and math.isfinite(value) and _OPS[self.op](value, self.bound)

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark: `data` is a path relative to the data root (an absolute path is used as is), or a
    function returning the sequence folder (called once, before the timed runs)."""

    name: str
    config: str  # relative to the repository root
    data: str | Callable[[], Path]
    overrides: tuple[str, ...] = ()
    max_frames: int | None = None  # None: all frames
    targets: tuple[Target, ...] = ()
    note: str = ""


def ate_at_most(metres: float) -> Target:
    return Target("ate_rmse_m", "<=", metres)


ALL_FRAMES_TRACKED = Target("tracked_fraction", ">=", 1.0)
SPEED_TARGETS = (Target("fps", ">=", 25.0), Target("tracking_ms_p50", "<=", 25.0), Target("peak_rss_mb", "<=", 800.0))


def synthetic_orbit_300() -> Path:
    """The cached 300-frame synthetic orbit (RGB-D, seed 0), rendered first if missing."""
    from slam.synthetic import ensure_sequence

    return ensure_sequence(None, frames=300, seed=0, trajectory="orbit", stereo=False)


CASES: tuple[Case, ...] = (
    Case("synthetic_rgbd_300", "configs/synthetic_rgbd.yaml", synthetic_orbit_300,
         targets=(ate_at_most(0.005), ALL_FRAMES_TRACKED)),
    Case("tum_fr3_teddy_rgbd", "configs/tum_fr3_rgbd.yaml", "tum/rgbd_dataset_freiburg3_teddy",
         targets=(ate_at_most(0.007), ALL_FRAMES_TRACKED, *SPEED_TARGETS)),
    Case("kitti_06_stereo", "configs/kitti_04-12_stereo.yaml", "kitti/sequences/06",
         targets=(ate_at_most(0.18), ALL_FRAMES_TRACKED)),
    Case("euroc_v101_stereo", "configs/euroc_stereo.yaml", "euroc/V1_01_easy",
         note="the vehicle stands still in this chunk: speed only, no ATE target"),
    Case("synthetic_mono_300", "configs/synthetic_mono.yaml", synthetic_orbit_300,
         targets=(ate_at_most(0.01), Target("tracked_fraction", ">=", 0.95)), note="Sim(3) ATE"),
    Case("tum_fr3_teddy_mono", "configs/tum_fr3_mono.yaml", "tum/rgbd_dataset_freiburg3_teddy",
         targets=(ate_at_most(0.015), Target("tracked_fraction", ">=", 0.9)), note="Sim(3) ATE"),
    Case("kitti_07_mono", "configs/kitti_04-12_mono.yaml", "kitti/sequences/07",
         targets=(ate_at_most(0.35), Target("tracked_after_init", ">=", 0.95)), note="Sim(3) ATE"),
)


def select_cases(cases: Sequence[Case], names: Sequence[str] | None) -> list[Case]:
    """The cases named (in table order), or all of them; unknown names raise ValueError."""
    if not names:
        return list(cases)
    known = {c.name for c in cases}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [c for c in cases if c.name in set(names)]


def resolve_data(case: Case, data_root: Path) -> Path:
    return Path(case.data()) if callable(case.data) else data_root / case.data


def slam_command(case: Case, data: Path, run_dir: Path) -> list[str]:
    """The exact `slam run` argv of one run (executed with the repository root as working directory)."""
    cmd = [sys.executable, "-m", "slam", "run", case.config, "--data", str(data), "--out", str(run_dir), "--quiet"]
    if case.max_frames is not None:
        cmd += ["--max-frames", str(case.max_frames)]
    for override in case.overrides:
        cmd += ["--set", override]
    return cmd


# ---------------------------------------------------------------- running


def run_once(index: int, command: list[str], run_dir: Path, timeout_s: float) -> dict[str, Any]:
    """One run as a child process; its stdout/stderr go to run_dir.with_suffix('.log')."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a stale run.json must never stand in for a failed run
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
        exit_code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        exit_code, stdout, stderr = None, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {timeout_s:g} s"
    seconds = time.perf_counter() - t0
    run_dir.with_suffix(".log").write_text(f"$ {shlex.join(command)}\n{stdout}\n--- stderr ---\n{stderr}")
    return collect_run(index, exit_code, run_dir, stderr, seconds)


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def collect_run(index: int, exit_code: int | None, run_dir: Path, stderr: str = "",
                seconds: float = float("nan")) -> dict[str, Any]:
    """A run's record: ok only with exit status 0 and a readable run.json (exit_code None: timed out)."""
    record: dict[str, Any] = {"index": index, "ok": False, "exit_code": exit_code, "seconds": seconds,
                              "run_dir": str(run_dir), "error": "", "metrics": {}}
    run_json = run_dir / "run.json"
    try:
        metrics = json.loads(run_json.read_text())
    except (OSError, ValueError) as exc:
        metrics = None
        record["error"] = f"no readable run.json ({type(exc).__name__})"
    if metrics is not None:
        record["metrics"] = with_derived_metrics(metrics)
    if exit_code != 0:
        reason = "timed out" if exit_code is None else f"exit {exit_code}"
        record["error"] = f"{reason}: {_tail(stderr)}".rstrip(": ")
    record["ok"] = exit_code == 0 and metrics is not None
    return record


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-3:])[-_ERROR_TAIL_CHARS:]


def with_derived_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """run.json plus tracked_fraction = tracked_frames / frames and, for monocular runs (which start once
    two views give a map), tracked_after_init = tracked_frames / frames from the initialisation on."""
    out = dict(metrics)
    frames, done = metrics.get("frames"), metrics.get("tracked_frames")
    if isinstance(frames, int) and isinstance(done, int) and frames > 0:
        out["tracked_fraction"] = done / frames
        start = metrics.get("initialized_frame")
        if isinstance(start, int) and 0 <= start < frames:
            out["tracked_after_init"] = done / (frames - start)
    return out


def run_case(case: Case, data_root: Path, out: Path, runs: int, timeout_s: float,
             log: Callable[[str], None]) -> dict[str, Any]:
    """All runs of one case, one after another, and their aggregate."""
    log(f"[{case.name}] preparing the data")
    try:
        data = resolve_data(case, data_root)
    except Exception as exc:  # a broken case is reported, the others still run
        log(f"[{case.name}] cannot prepare the data: {exc}")
        return case_result(case, None, [], [], setup_error=f"{type(exc).__name__}: {exc}")
    records, commands = [], []
    for i in range(1, runs + 1):
        run_dir = out / case.name / f"run-{i}"
        command = slam_command(case, data, run_dir)
        commands.append(command)
        log(f"[{case.name}] run {i}/{runs}: {shlex.join(command)}")
        record = run_once(i, command, run_dir, timeout_s)
        log(f"[{case.name}] run {i}/{runs}: {_run_line(record)}")
        records.append(record)
    return case_result(case, data, records, commands)


def _run_line(record: dict[str, Any]) -> str:
    if not record["ok"]:
        return f"FAILED ({record['error']})"
    m = record["metrics"]
    return (f"ok in {record['seconds']:.1f} s: tracked {m.get('tracked_frames')}/{m.get('frames')} "
            f"ATE {_num(m.get('ate_rmse_m'), 4)} m, fps {_num(m.get('fps'), 1)}, "
            f"p50 {_num(m.get('tracking_ms_p50'), 1)} ms")


# ---------------------------------------------------------------- aggregation


def aggregate(metric_dicts: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median, min, max and count of every numeric metric (None / NaN / bools / non-numbers skipped)."""
    values: dict[str, list[float]] = {}
    for metrics in metric_dicts:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values.setdefault(key, []).append(float(value))
    return {key: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
            for key, v in values.items()}


def check_targets(targets: Sequence[Target], summary: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    checks = []
    for t in targets:
        value = summary.get(t.metric, {}).get("median")
        checks.append({"metric": t.metric, "op": t.op, "bound": t.bound, "median": value, "met": t.met_by(value)})
    return checks


def case_result(case: Case, data: Path | None, records: list[dict[str, Any]], commands: list[list[str]],
                setup_error: str = "") -> dict[str, Any]:
    ok = [r for r in records if r["ok"]]
    summary = aggregate([r["metrics"] for r in ok])
    checks = check_targets(case.targets, summary)
    first = ok[0]["metrics"] if ok else {}
    return {
        "name": case.name, "config": case.config, "data": str(data) if data is not None else None,
        "overrides": list(case.overrides), "max_frames": case.max_frames, "note": case.note,
        "targets": [t.describe() for t in case.targets], "commands": [shlex.join(c) for c in commands],
        "mode": first.get("mode"), "sequence": first.get("sequence"),
        "runs": records, "ok_runs": len(ok), "failed_runs": len(records) - len(ok), "setup_error": setup_error,
        "summary": summary, "checks": checks,
        "targets_met": bool(ok) and not setup_error and len(ok) == len(records) and all(c["met"] for c in checks),
    }


# ---------------------------------------------------------------- the whole benchmark


def run_benchmark(cases: Sequence[Case], data_root: Path, out: Path, runs: int = 3, command_line: str = "",
                  timeout_s: float = DEFAULT_TIMEOUT_S, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every case (sequentially), write OUT/results.json and OUT/benchmark.md, return the results."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    log = log or _log
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now().astimezone()
    results = {
        "date": started.isoformat(timespec="seconds"), "machine": machine_info(), "git": git_revision(),
        "command": command_line, "runs_per_case": runs, "data_root": str(data_root), "out": str(out),
        "cases": [run_case(c, Path(data_root), out, runs, timeout_s, log) for c in cases],
    }
    results["finished"] = datetime.now().astimezone().isoformat(timespec="seconds")
    results["all_targets_met"] = all(c["targets_met"] for c in results["cases"])
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (out / "benchmark.md").write_text(format_section(results) + "\n")
    return results


def _json_default(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
            "memory_gib": total_memory_gib(), "python": platform.python_version()}


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return None


def total_memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def git_revision() -> str | None:
    """HEAD's commit, plus "+ uncommitted changes" when the tree differs (read-only: no optional locks)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, env=env, timeout=30)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO_ROOT, capture_output=True, env=env,
                               timeout=30).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


# ---------------------------------------------------------------- Markdown


TABLE_HEADER = ("| case | runs | ATE m median [min-max] | tracked/frames | fps | tracking ms p50 / p95 | "
                "peak RSS MB | startup s | local BA ms | targets met? |")


def format_section(results: dict[str, Any]) -> str:
    """The Markdown section, markers included."""
    m = results["machine"]
    memory = f"{m['memory_gib']:g} GiB" if m.get("memory_gib") is not None else "unknown"
    lines = [
        START_MARKER,
        "## Core benchmark",
        "",
        f"- Date: {results['date']}",
        f"- Machine: {m['platform']}; {m['cpu_count']} CPUs ({m.get('cpu_model') or 'CPU model unknown'}); "
        f"{memory} memory; Python {m.get('python', '?')}",
    ]
    if results.get("git"):
        lines.append(f"- Code: commit {results['git']}")
    lines += [
        f"- Command: `{results['command']}`",
        f"- Each run is a separate `python -m slam run ... --quiet` process, run one after another; values are "
        f"median [min-max] over the successful runs ({results['runs_per_case']} per case); targets are checked "
        "on the medians.",
        "",
        TABLE_HEADER,
        "|" + "---|" * TABLE_HEADER.count(" | ") + "---|",
        *(table_row(c) for c in results["cases"]),
        "",
        *target_lines(results["cases"]),
        *failure_lines(results["cases"]),
        END_MARKER,
    ]
    return "\n".join(lines)


def table_row(case: dict[str, Any]) -> str:
    s = case["summary"]
    total = len(case["runs"])
    runs = str(total) if case["failed_runs"] == 0 else f"{case['ok_runs']}/{total} ok"
    cells = [
        case["name"], runs, stat(s, "ate_rmse_m", 4), tracked(s), stat(s, "fps", 1),
        f"{stat(s, 'tracking_ms_p50', 1)} / {stat(s, 'tracking_ms_p95', 1)}", stat(s, "peak_rss_mb", 0),
        stat(s, "startup_s", 2), stat(s, "local_ba_ms_mean", 1), verdict(case),
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def verdict(case: dict[str, Any]) -> str:
    if case["setup_error"]:
        return f"FAILED: {case['setup_error']}"
    if case["ok_runs"] == 0:
        return f"FAILED: {len(case['runs'])} of {len(case['runs'])} runs failed"
    missed = [f"{c['metric']} {_sig(c['median'])} not {c['op']} {c['bound']:g}"
              for c in case["checks"] if not c["met"]]
    if case["failed_runs"]:
        return "; ".join([f"FAILED: {case['failed_runs']} of {len(case['runs'])} runs failed", *missed])
    if missed:
        return "no: " + "; ".join(missed)
    return "yes" if case["checks"] else "yes (no targets)"


def target_lines(cases: list[dict[str, Any]]) -> list[str]:
    lines = ["Targets (medians; tracked_fraction = tracked/frames):", ""]
    for c in cases:
        what = ", ".join(c["targets"]) or "none"
        note = f" ({c['note']})" if c["note"] else ""
        frames = "all frames" if c["max_frames"] is None else f"first {c['max_frames']} frames"
        lines.append(f"- {c['name']}: `{c['config']}`, {frames}; {what}{note}")
    return lines + [""]


def failure_lines(cases: list[dict[str, Any]]) -> list[str]:
    lines = []
    for c in cases:
        if c["setup_error"]:
            lines.append(f"- {c['name']}: data not prepared: {_oneline(c['setup_error'])}")
        lines += [f"- {c['name']} run {r['index']}: {_oneline(r['error'])} (log: `{r['run_dir']}.log`)"
                  for r in c["runs"] if not r["ok"]]
    return ["Failed runs:", "", *lines, ""] if lines else []


def _num(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _sig(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _oneline(text).replace("|", "\\|")


def replace_section(text: str, section: str) -> str:
    """`text` with the marked section replaced by `section` (markers included), or `section` appended."""
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start == -1 and end == -1:
        if not text:
            return section + "\n"
        return text + ("\n" if text.endswith("\n") else "\n\n") + section + "\n"
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"unbalanced markers: need {START_MARKER} before {END_MARKER}")
    return text[:start] + section + text[end + len(END_MARKER):]


def update_markdown(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    updated = replace_section(text, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(updated)
    tmp.replace(path)


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark the SLAM core targets (sequential runs, one process each).")
    p.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help=f"default {DEFAULT_DATA_ROOT}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these cases")
    p.add_argument("--markdown", type=Path, help="update the core-benchmark section of this Markdown file")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per run before it is failed")
    p.add_argument("--max-frames", type=int, help="cap every case at N frames (smoke tests; not for reported figures)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p.parse_args(argv)


def command_line(argv: Sequence[str]) -> str:
    """How this tool was invoked: interpreter and script relative to the working directory when inside it."""
    return shlex.join([_short_path(sys.executable), _short_path(__file__), *argv])


def _short_path(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.name}: {c.config} on {c.data if isinstance(c.data, str) else c.data.__name__}; "
                  f"targets: {', '.join(t.describe() for t in c.targets) or 'none'}")
        return 0
    try:
        if args.runs < 1:
            raise ValueError("--runs must be at least 1")
        cases = select_cases(CASES, args.only)
    except ValueError as exc:
        print(f"benchmark_core: error: {exc}", file=sys.stderr)
        return 2
    if args.max_frames is not None:
        cases = [dataclasses.replace(c, max_frames=args.max_frames) for c in cases]
    results = run_benchmark(cases, args.data_root.resolve(), args.out, args.runs, command_line(argv),
                            args.timeout)
    section = format_section(results)
    print(section)
    if args.markdown:
        update_markdown(args.markdown, section)
        print(f"updated {args.markdown}", file=sys.stderr)
    print(f"results: {Path(results['out']) / 'results.json'}", file=sys.stderr)
    return 0 if results["all_targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
