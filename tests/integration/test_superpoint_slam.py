"""RGB-D SLAM with SuperPoint features (float descriptors, L2 matching) on TUM fr3/teddy, end to end.

Reads Magic Leap's weights from ../shared/weights (never from the repository) and skips without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from slam.config import load_config  # noqa: E402
from slam.runner import run_sequence  # noqa: E402

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO.parent / "shared" / "weights" / "superpoint_v1.pth"


def test_superpoint_rgbd_slam_on_teddy(tum_teddy, tmp_path):
    if not WEIGHTS.is_file():
        pytest.skip(f"SuperPoint weights not found at {WEIGHTS}")
    config = load_config(
        REPO / "configs" / "tum_fr3_rgbd.yaml",
        ["features.type=superpoint", f"features.weights={WEIGHTS}", "dataset.realtime=false"],
    )
    result = run_sequence(config, tum_teddy, tmp_path, progress=False)
    assert result.exit_code == 0 and result.error == ""
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["tracked_frames"] == summary["frames"] > 150
    assert summary["ate_rmse_m"] < 0.02
