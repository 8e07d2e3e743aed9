"""Shared fixtures: where the read-only benchmark chunks live, and a skip when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tum_teddy(shared_data: Path) -> Path:
    return shared_data / "tum" / "rgbd_dataset_freiburg3_teddy"


@pytest.fixture(scope="session")
def kitti_root(shared_data: Path) -> Path:
    return shared_data / "kitti"


@pytest.fixture(scope="session")
def euroc_v101(shared_data: Path) -> Path:
    return shared_data / "euroc" / "V1_01_easy"
