"""Running a packaged config on a sequence, threaded (the default) or in sync mode, for the integration tests."""

from __future__ import annotations

from pathlib import Path

from slam.config import load_config
from slam.runner import RunResult, run_sequence

REPO = Path(__file__).resolve().parents[2]
SYNC = ("mapping.threaded=false", "dataset.realtime=false")  # deterministic: the same trajectory every run


def run(config_name: str, data: Path, out: Path, *overrides: str) -> RunResult:
    """`slam run configs/CONFIG_NAME --data DATA --out OUT --set OVERRIDE...`, in this process."""
    return run_sequence(load_config(REPO / "configs" / config_name, overrides), data, out, progress=False)
