"""Every shipped config loads, and the dataset configs say what their readers need."""

from __future__ import annotations

from pathlib import Path

import pytest

from slam.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ALL = sorted(CONFIGS.glob("*.yaml"))


def test_configs_exist():
    assert len(ALL) >= 9


@pytest.mark.parametrize("path", ALL, ids=[p.name for p in ALL])
def test_config_loads(path):
    config = load_config(path)
    assert config.mode in ("rgbd", "stereo", "mono")
    assert path.read_text().lstrip().startswith("#"), "each config starts with a comment saying what it is for"


@pytest.mark.parametrize("name", ["tum_fr1_rgbd", "tum_fr2_rgbd", "tum_fr3_rgbd", "tum_fr3_mono"])
def test_tum_configs_carry_intrinsics(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.dataset.format == "tum"
    assert None not in (config.camera.fx, config.camera.fy, config.camera.cx, config.camera.cy)
    assert config.camera.depth_scale == 5000.0 and config.camera.fps == 30.0
    assert len(config.camera.dist) in (0, 5)
    if config.mode == "rgbd":
        assert config.camera.baseline > 0  # RGB-D needs a virtual baseline to weigh depth
        # ORB-SLAM3's TUM settings, not values fitted to a sequence: bf = fx * baseline = 40, close within 40 baselines
        assert abs(config.camera.fx * config.camera.baseline - 40.0) < 0.05
        assert config.camera.depth_threshold == 40.0


@pytest.mark.parametrize("name", ["kitti_04-12_mono", "kitti_04-12_stereo", "kitti_00-02_stereo", "euroc_mono",
                                  "euroc_stereo"])
def test_calibrated_datasets_leave_intrinsics_to_the_reader(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.camera.fx is None and config.dataset.format in ("kitti", "euroc")
    if name.startswith("kitti"):
        assert config.features.n_features == 2000
    if name == "euroc_stereo":
        assert config.features.n_features == 1200
