"""One benchmark run as a value (Job), and `run_job`, which runs it in a fresh Python process.

`run_job` is the unit every executor calls (a local pool or a Ray worker): it needs nothing from the
caller's process, so the job travels as a small picklable value. The config travels as text, so a remote
worker needs only the data (at `job.data`) and this package installed. A fresh process per run keeps peak
memory, start-up time and imports each run's own.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slam.bench.suite import BenchSequence, Suite

SKIPPED_EXIT = 3  # the child's exit status for "cannot run here" (a peer's missing dependency)
RUN_JSON = "run.json"
TIMINGS_JSON = "timings_ms.json"
LOG = "job.log"
_ERROR_TAIL_CHARS = 400


@dataclass(frozen=True)
class Job:
    sequence: str
    method: str
    run: int  # 1-based
    mode: str
    data: str  # the sequence folder as the worker sees it
    config_name: str
    config_text: str
    out_dir: str  # this run's folder
    timeout_s: float
    peer: str | None = None
    overrides: tuple[str, ...] = ()
    max_frames: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        data["overrides"] = tuple(data.get("overrides", ()))
        return cls(**data)


@dataclass
class RunRecord:
    sequence: str
    method: str
    run: int
    status: str  # "ok", "failed" or "skipped"
    error: str = ""
    exit_code: int | None = None  # None: timed out (or never started)
    seconds: float = math.nan  # wall time of the whole process
    metrics: dict[str, Any] = field(default_factory=dict)  # run.json (+ tracked_fraction)
    timings_ms: list[float] = field(default_factory=list)  # tracking time of each frame, in order
    run_dir: str = ""


@dataclass(frozen=True)
class Skip:
    """A cell that is not run at all: the method cannot work in the sequence's mode."""

    sequence: str
    method: str
    reason: str


def plan_jobs(
    suite: Suite, data_root: str | Path, out: str | Path, runs: int | None = None
) -> tuple[list[Job], list[Skip]]:
    """Every (sequence, method, run) job in table order, and the cells skipped for their mode.

    `data_root` is the data folder as the workers see it (made absolute here, against this process's cwd).
    Synthetic sequences are rendered here, before any run (see `sequence_folder`).
    """
    from slam.bench.peers import PEERS

    runs = suite.runs if runs is None else runs
    root, out = os.path.abspath(data_root), Path(out).resolve()
    jobs: list[Job] = []
    skips: list[Skip] = []
    for seq in suite.sequences:
        text = seq.config.read_text()
        data = sequence_folder(seq, root)
        for method in suite.methods:
            peer = PEERS.get(method.peer) if method.peer else None
            if peer is not None and seq.mode not in peer.modes:
                skips.append(Skip(seq.name, method.name, f"{peer.name} runs in {', '.join(peer.modes)} only"))
                continue
            for i in range(1, runs + 1):
                run_dir = out / "runs" / seq.name / method.name / f"run-{i}"
                jobs.append(
                    Job(
                        seq.name,
                        method.name,
                        i,
                        seq.mode,
                        data,
                        seq.config.name,
                        text,
                        str(run_dir),
                        suite.timeout_s,
                        method.peer,
                        method.overrides,
                        seq.max_frames,
                    )
                )
    return jobs, skips


def sequence_folder(seq: BenchSequence, data_root: str) -> str:
    """The sequence's folder: under the data root, or a synthetic sequence rendered into this machine's cache
    (found there when rendered before). Rendering happens once, here, so no run's time includes it; with
    `--ray` across machines the workers must see this machine's cache folder at the same path."""
    if seq.synthetic is None:
        return os.path.join(data_root, seq.data)
    from slam.synthetic import ensure_sequence

    s, stereo = seq.synthetic, seq.mode == "stereo"
    return str(ensure_sequence(None, frames=s.frames, seed=s.seed, trajectory=s.trajectory, stereo=stereo,
                               fps=s.fps))


def run_job(job: Job) -> RunRecord:
    """Run `job` as `python -m slam.bench.child` (the job as JSON on stdin), stopped after job.timeout_s."""
    out = Path(job.out_dir)
    if out.exists():
        shutil.rmtree(out)  # a stale run.json must never stand in for a failed run
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "slam.bench.child"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command, input=job.to_json(), capture_output=True, text=True, timeout=job.timeout_s)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stdout = None, _text(exc.stdout)
        stderr = _text(exc.stderr) + f"\ntimed out after {job.timeout_s:g} s"
    seconds = time.perf_counter() - t0
    (out / LOG).write_text(f"$ {' '.join(command)} < job.json\n{stdout}\n--- stderr ---\n{stderr}")
    return collect(job, code, stdout + stderr, seconds)


def collect(job: Job, code: int | None, output: str, seconds: float) -> RunRecord:
    """The record of a finished child: ok only with exit status 0 and a readable run.json."""
    out = Path(job.out_dir)
    record = RunRecord(job.sequence, job.method, job.run, "failed", exit_code=code, seconds=seconds, run_dir=str(out))
    metrics = _read_json(out / RUN_JSON)
    if isinstance(metrics, dict):
        record.metrics = with_derived_metrics(metrics)
    timings = _read_json(out / TIMINGS_JSON)
    if isinstance(timings, list):
        record.timings_ms = [float(t) for t in timings]
    if code == SKIPPED_EXIT:
        record.status, record.error = "skipped", _last_line(output)
    elif code == 0 and isinstance(metrics, dict):
        record.status = "ok"
    elif code is None:
        record.error = f"timed out after {job.timeout_s:g} s"
    else:
        record.error = f"exit {code}: {_last_line(output)}".rstrip(": ")  # the whole output is in job.log
    return record


def with_derived_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """run.json without its config echo, plus tracked_fraction = tracked_frames / frames and, where the map
    started at frame `initialized_frame` (monocular runs need two views), tracked_after_init = tracked_frames
    / the frames from that one on."""
    out = {k: v for k, v in metrics.items() if k != "config"}
    frames, tracked = metrics.get("frames"), metrics.get("tracked_frames")
    if isinstance(frames, int) and isinstance(tracked, int) and frames > 0:
        out["tracked_fraction"] = tracked / frames
        start = metrics.get("initialized_frame")
        if isinstance(start, int) and not isinstance(start, bool) and 0 <= start < frames:
            out["tracked_after_init"] = tracked / (frames - start)
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-_ERROR_TAIL_CHARS:] if lines else ""
