"""The same input and config give the same trajectory, keyframes and map with `mapping.threaded: false`.

(With the mapping thread, keyframe decisions depend on whether mapping is busy at that instant, so two
runs differ slightly; that mode is for speed, this one for reproducible results.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slam.config import load_config
from slam.runner import run_sequence
from slam.synthetic import ensure_sequence

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_synchronous_mapping_runs_are_identical(tmp_path):
    data = ensure_sequence(tmp_path / "cache", frames=45, seed=3, trajectory="orbit", width=320, height=240)
    config = load_config(REPO / "configs" / "synthetic_rgbd.yaml", ["mapping.threaded=false"])
    outputs = []
    for name in ("first", "second"):
        result = run_sequence(config, data, tmp_path / name, progress=False)
        assert result.exit_code == 0 and result.summary["tracked_frames"] == 45
        outputs.append({f: (tmp_path / name / f).read_bytes() for f in ("trajectory.tum", "keyframes.tum", "map.ply")})
    assert result.summary["keyframes"] >= 3  # local mapping and the final BA did run
    assert outputs[0] == outputs[1]
