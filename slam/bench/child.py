"""`python -m slam.bench.child`: one benchmark run in its own process; its Job arrives as JSON on stdin.

Writes the run folder (config.yaml as used, trajectory.tum, run.json, timings_ms.json) and exits with the
run's status: 0 done, 2 bad input (one line on stderr), 1 a failure inside, SKIPPED_EXIT when a peer's
dependency is missing here.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports: start-up time includes them, as for `slam run`

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from slam.bench.jobs import SKIPPED_EXIT, TIMINGS_JSON, Job  # noqa: E402
from slam.bench.peers import PeerUnavailable  # noqa: E402
from slam.errors import SlamInputError  # noqa: E402


def main() -> int:
    job = Job.from_json(sys.stdin.read())
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.yaml"
    config_path.write_text(job.config_text)  # the run folder records the config it ran with
    try:
        from slam.config import load_config

        config = load_config(config_path, job.overrides)
        exit_code, timings = _run(job, config, out)
    except SlamInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PeerUnavailable as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return SKIPPED_EXIT
    (out / TIMINGS_JSON).write_text(json.dumps([round(t, 3) for t in timings]) + "\n")
    return exit_code


def _run(job: Job, config, out: Path) -> tuple[int, list[float]]:
    if job.peer is not None:
        from slam.bench.peers.loop import run_peer

        return run_peer(job.peer, config, job.data, out, job.max_frames, STARTED)
    from slam.runner import run_sequence

    result = run_sequence(config, job.data, out, max_frames=job.max_frames, progress=False, started_at=STARTED)
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    return result.exit_code, result.timings_ms


if __name__ == "__main__":
    raise SystemExit(main())
