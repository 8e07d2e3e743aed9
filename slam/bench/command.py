"""`slam bench SUITE.yaml --data-root DIR [--runs N] [--out DIR] [--workers K] [--ray [ADDRESS]]`, and
`slam install-orbslam3 [--venv DIR] [--vocabulary ORBVOC_TXT]` (the optional ORB-SLAM3 peer's own venv)."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slam.errors import SlamInputError

if TYPE_CHECKING:
    from slam.bench.suite import Suite


@dataclass
class BenchOutcome:
    cells: list  # list[slam.bench.results.Cell]
    section: str  # the Markdown section
    results_path: Path
    plots: list[Path]
    section_name: str  # the suite's `section`: the Markdown markers

    @property
    def failed_runs(self) -> int:
        return sum(r.status == "failed" for c in self.cells for r in c.runs)

    @property
    def targets_missed(self) -> int:
        return sum(not c.targets_met for c in self.cells)


def add_command(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark suite: sequences x methods (ours, peers), N runs each",
        description="Run every (sequence, method) of SUITE.yaml N times, each run in its own process; "
        "write OUT/results.json, OUT/bench.md and OUT/plots/. Exit status 1 when a run failed or a cell "
        "missed one of its sequence's targets.",
    )
    p.add_argument("suite", help="SUITE.yaml (configs/bench/default.yaml covers ../shared/data)")
    p.add_argument(
        "--data-root", required=True, help="folder the suite's data paths are relative to, as every worker sees it"
    )
    p.add_argument("--runs", type=int, default=None, help="runs per cell (default: the suite's)")
    p.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runs at a time (default 1: timings are cleanest when runs do not share the CPU)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="run on the Ray cluster at ADDRESS; with no ADDRESS, on a local Ray instance of --workers CPUs",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds before a run is stopped (default: the suite's)")
    p.add_argument("--max-frames", type=int, default=None, help="cap every sequence (smoke tests, not for figures)")
    p.add_argument(
        "--markdown",
        default=None,
        metavar="FILE",
        help="also replace the suite's section of FILE (e.g. docs/benchmarks.md; `section` in the suite)",
    )
    p.add_argument("--note", default="", help="a line for the report (e.g. the machine was loaded)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)
    _add_install_orbslam3(sub)


def _add_install_orbslam3(sub) -> None:
    p = sub.add_parser(
        "install-orbslam3",
        help="install ORB-SLAM3 (pyorbslam3, GPLv3) into a venv of its own: the orbslam3 peer of `slam bench`",
        description="Make a virtual environment (default $XDG_CACHE_HOME/slam/orbslam3/venv, else "
        "~/.cache/slam/orbslam3/venv) and pip-install the pyorbslam3 wheel (ORB-SLAM3 v1.0, no compiling) into "
        "it. `slam bench` runs its orbslam3 peer there, in a separate process; a venv elsewhere is used through "
        "SLAM_ORBSLAM3_PYTHON=VENV/bin/python. ORB-SLAM3 is never imported by the slam package.",
    )
    p.add_argument("--venv", default=None, help="where to make it (default: the cache folder above)")
    p.add_argument(
        "--vocabulary",
        default=None,
        metavar="ORBVOC_TXT",
        help="ORB-SLAM3's ORBvoc.txt, used from then on (SLAM_ORBSLAM3_VOCAB overrides it); without one the peer "
        "uses our own ORB vocabulary, written as a 6-level DBoW2 tree like ORBvoc.txt (relocalisation and loop "
        "detection may be weaker)",
    )
    p.add_argument("--python", default=None, help="the Python 3.11 to make the venv with (default: this one)")
    p.set_defaults(func=_cmd_install_orbslam3)


def _cmd_install_orbslam3(args) -> int:
    from slam.bench.peers.orbslam3 import PYTHON_ENV, install

    peer = install(args.venv, args.vocabulary, args.python)
    where = "" if args.venv is None else f"; set {PYTHON_ENV}={peer} for `slam bench` to use it"
    print(f"ORB-SLAM3 peer installed: {peer}{where}")
    return 0


def _cmd_bench(args) -> int:
    outcome = run_bench(
        args.suite,
        args.data_root,
        args.out,
        runs=args.runs,
        workers=args.workers,
        ray_address=args.ray,
        timeout_s=args.timeout,
        max_frames=args.max_frames,
        progress=not args.quiet,
        command=_command_line(args),
        note=args.note,
    )
    if args.markdown:
        from slam.bench.report import update_markdown

        update_markdown(Path(args.markdown), outcome.section, outcome.section_name)
    print(outcome.section)
    print(f"results: {outcome.results_path}; plots: {', '.join(str(p) for p in outcome.plots)}")
    return 1 if outcome.failed_runs or outcome.targets_missed else 0


def run_bench(
    suite_path: str | Path,
    data_root: str | Path,
    out: str | Path,
    runs: int | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    timeout_s: float | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    command: str = "",
    note: str = "",
) -> BenchOutcome:
    """Load the suite, run every job (locally or on Ray), write results.json, bench.md and the plots."""
    from slam.bench import executors, jobs, plots, report, results
    from slam.bench.suite import load_suite

    _check_counts(runs, workers, timeout_s, max_frames)
    suite = _with_limits(load_suite(suite_path), timeout_s, max_frames)
    if not ray_address and not Path(data_root).is_dir():  # a cluster's workers may see paths this machine lacks
        raise SlamInputError("data root not found", data_root)
    out = Path(out).resolve()
    planned, skips = jobs.plan_jobs(suite, data_root, out, runs)
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    if ray_address is None:
        records = executors.run_local(planned, workers, progress)
    else:
        records = executors.run_ray(planned, ray_address or None, workers, progress)
    cells = results.build_cells(suite, records, skips)
    header = _header(started, command, note, runs or suite.runs, data_root, _executor(ray_address, workers))
    results_path = out / "results.json"
    results.write_results(results_path, results.results_document(suite, cells, header))
    section = report.format_section(cells, header, suite)
    (out / "bench.md").write_text(section + "\n")
    return BenchOutcome(cells, section, results_path, plots.write_plots(cells, out / "plots"), suite.section)


def _with_limits(suite: Suite, timeout_s: float | None, max_frames: int | None) -> Suite:
    """The suite with the command line's timeout and frame cap in place of its own."""
    if timeout_s is not None:
        suite = dataclasses.replace(suite, timeout_s=timeout_s)
    if max_frames is not None:
        suite = dataclasses.replace(
            suite, sequences=tuple(dataclasses.replace(s, max_frames=max_frames) for s in suite.sequences)
        )
    return suite


def _check_counts(runs: int | None, workers: int, timeout_s: float | None, max_frames: int | None) -> None:
    if runs is not None and runs < 1:
        raise SlamInputError(f"--runs must be at least 1, got {runs}")
    if workers < 1:
        raise SlamInputError(f"--workers must be at least 1, got {workers}")
    if timeout_s is not None and not timeout_s > 0:
        raise SlamInputError(f"--timeout must be positive, got {timeout_s}")
    if max_frames is not None and max_frames < 1:
        raise SlamInputError(f"--max-frames must be at least 1, got {max_frames}")


def _executor(ray_address: str | None, workers: int) -> str:
    if ray_address is None:
        return f"local pool, {workers} run(s) at a time"
    return f"Ray cluster at {ray_address}" if ray_address else f"local Ray instance, {workers} CPU(s)"


def _header(started: str, command: str, note: str, runs: int, data_root: str | Path, executor: str) -> dict[str, Any]:
    from slam.bench.results import git_revision, machine_info

    return {
        "date": started,
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_revision(),
        "command": command,
        "executor": executor,
        "runs_per_cell": runs,
        "data_root": str(data_root),
        "note": note,
    }


def _command_line(args) -> str:
    parts = ["slam", "bench", args.suite, "--data-root", args.data_root]
    for flag, value in (
        ("--runs", args.runs),
        ("--out", args.out),
        ("--workers", args.workers),
        ("--timeout", args.timeout),
        ("--max-frames", args.max_frames),
        ("--markdown", args.markdown),
    ):
        if value is not None:
            parts += [flag, str(value)]
    if args.ray is not None:
        parts += ["--ray"] + ([args.ray] if args.ray else [])
    return shlex.join(parts)
