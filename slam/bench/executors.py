"""Run jobs with `run_job`: K at a time on this machine, or as tasks on a Ray cluster. Same function, same
records, in job order; a progress bar counts finished runs and failures.

Every job starts its own process (`run_job` spawns it), so the local pool is a pool of threads that each
wait on one child process: K runs at a time, each alone in its process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from slam.bench.jobs import Job, RunRecord, run_job


def run_local(jobs: Sequence[Job], workers: int = 1, progress: bool = True) -> list[RunRecord]:
    """Run `jobs`, `workers` at a time, on this machine."""
    records: list[RunRecord | None] = [None] * len(jobs)
    with (
        ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="slam-bench") as pool,
        _Progress(len(jobs), progress, "local") as bar,
    ):
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            records[futures[future]] = future.result()
            bar.done(records[futures[future]])
    return [r for r in records if r is not None]


def run_ray(
    jobs: Sequence[Job], address: str | None = None, workers: int = 1, progress: bool = True, cpus_per_job: float = 1.0
) -> list[RunRecord]:
    """Run `jobs` as Ray tasks: on the cluster at `address`, or on a local Ray instance with `workers` CPUs.

    The workers need this package installed and the data at the jobs' paths (the data root as they see it).
    """
    try:
        import ray
    except ImportError as exc:
        from slam.errors import SlamInputError

        raise SlamInputError(f"--ray needs the 'ray' package ({exc}); install the 'dev' extra") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls from a benchmark
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=cpus_per_job, max_retries=0)(run_job)
        refs = [remote.remote(job) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        records: list[RunRecord | None] = [None] * len(jobs)
        pending = list(refs)
        with _Progress(len(jobs), progress, "ray") as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    records[index[ref]] = ray.get(ref)
                    bar.done(records[index[ref]])
        return [r for r in records if r is not None]
    finally:
        if started_here:
            ray.shutdown()


class _Progress:
    """tqdm over finished runs, with the failure count in the postfix."""

    def __init__(self, total: int, enabled: bool, where: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="run", desc=f"bench ({where})", disable=not enabled, dynamic_ncols=True)
        self.failed = 0

    def __enter__(self) -> _Progress:
        return self

    def done(self, record: RunRecord) -> None:
        self.failed += record.status == "failed"
        self.bar.set_postfix_str(
            f"{record.sequence}/{record.method} {record.status}, failed={self.failed}", refresh=False
        )
        self.bar.update(1)

    def __exit__(self, *exc) -> None:
        self.bar.close()
