"""Loop closing and relocalisation on rendered sequences (synchronous mapping, so runs repeat exactly).

Measured on the reference machine: the 400-frame loop gives 9.5 mm without loop closing and 3.2 mm with
it (one loop, closed at the end, then a global BA; 3.6 mm with the pose graph alone); the orbit
relocalises on the first frame after a covered lens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slam.config import load_config
from slam.io import open_sequence
from slam.runner import run_sequence
from slam.synthetic import render_sequence
from slam.system import System
from slam.tracking import TrackingState
from tests.integration.runs import REPO, SYNC

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def loop_sequence(tmp_path_factory) -> Path:
    return render_sequence(tmp_path_factory.mktemp("data") / "loop-400", frames=400, seed=1, trajectory="loop")


def run_loop(data: Path, out: Path, enabled: bool) -> dict:
    config = load_config(REPO / "configs" / "synthetic_rgbd.yaml", [*SYNC, f"loop_closing.enabled={enabled}"])
    result = run_sequence(config, data, out, progress=False)
    assert result.exit_code == 0, result.error
    return result.summary


def test_closing_the_loop_reports_it_and_cuts_the_drift(loop_sequence, tmp_path):
    """Sync, so deterministic, but not stable under perturbation: measured without / with loop closing 6.56 /
    5.70 mm, and 4.53 / 3.63 and 9.40 / 5.10 mm with 980 and 1020 features (the loop closed every time, at the
    end, cutting the drift by 13-46%). Before the per-cell FAST choice: 7.28 / 3.87 mm, and with 980 features
    no loop was found at all (6.53 mm) (docs/benchmarks.md)."""
    without = run_loop(loop_sequence, tmp_path / "off", enabled=False)
    with_loop = run_loop(loop_sequence, tmp_path / "on", enabled=True)
    assert without["loops"] == []
    assert len(with_loop["loops"]) >= 1
    loop = with_loop["loops"][0]
    assert loop["timestamps"][0] - loop["timestamps"][1] > 5.0  # the start, seen again at the end
    assert loop["global_ba_ms"] > 0  # the global BA after the loop ran (and was not cut short)
    assert with_loop["ate_rmse_m"] <= 0.9 * without["ate_rmse_m"], (with_loop["ate_rmse_m"], without["ate_rmse_m"])
    assert with_loop["ate_rmse_m"] <= 0.006, with_loop["ate_rmse_m"]


def test_a_covered_lens_loses_tracking_and_it_relocalises(tmp_path):
    data = render_sequence(tmp_path / "orbit", frames=150, seed=0, trajectory="orbit")
    config = load_config(REPO / "configs" / "synthetic_rgbd.yaml", SYNC)
    sequence = open_sequence(data, config)
    system = System(config, sequence.camera, threaded=False).start()
    covered = range(80, 90)
    states = []
    for frame in sequence.frames(len(sequence)):
        if frame.index in covered:
            frame.image = np.zeros_like(frame.image)
            frame.depth = np.zeros_like(frame.depth)
        states.append(system.process(frame).state)
    system.shutdown()
    assert all(s == TrackingState.LOST for s in states[80:90])
    back = next(i for i in range(90, len(states)) if states[i] == TrackingState.OK)
    assert back - 90 <= 3
    assert all(s == TrackingState.OK for s in states[back:])


def test_a_monocular_loop_is_closed_with_a_similarity(loop_sequence, tmp_path):
    """Sim(3) loop closing in monocular maps (loop_closing.monocular, on by default): the loop is found, its scale
    correction is the small one this synchronous run drifted by, and the trajectory improves (measured 4.4 mm ->
    3.7 mm)."""
    summaries = {}
    for enabled in (False, True):
        config = load_config(REPO / "configs" / "synthetic_mono.yaml", [*SYNC, f"loop_closing.monocular={enabled}"])
        result = run_sequence(config, loop_sequence, tmp_path / str(enabled), progress=False)
        assert result.exit_code == 0, result.error
        summaries[enabled] = result.summary
    assert summaries[False]["loops"] == []
    loops = summaries[True]["loops"]
    assert len(loops) == 1 and loops[0]["timestamps"][0] - loops[0]["timestamps"][1] > 5.0
    assert abs(loops[0]["scale"] - 1.0) < 0.05
    assert summaries[True]["ate_rmse_m"] <= 0.95 * summaries[False]["ate_rmse_m"], summaries
