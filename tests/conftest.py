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


# ---- synthetic sequences and map invariants for the SLAM core tests ---------------------------------------


@pytest.fixture(scope="session")
def synthetic_rgbd_seq(tmp_path_factory) -> Path:
    """A 40-frame RGB-D orbit (seed 0, 640x480) rendered once per session: exact depth and ground truth."""
    from slam.synthetic import render_sequence

    return render_sequence(tmp_path_factory.mktemp("synthetic") / "orbit-rgbd-40", frames=40, seed=0,
                           trajectory="orbit")


@pytest.fixture(scope="session")
def synthetic_stereo_seq(tmp_path_factory) -> Path:
    """A 30-frame rectified stereo orbit (seed 1, 640x480, baseline 0.1 m) rendered once per session."""
    from slam.synthetic import render_sequence

    return render_sequence(tmp_path_factory.mktemp("synthetic") / "orbit-stereo-30", frames=30, seed=1,
                           trajectory="orbit", stereo=True)


def _check_map_consistent(slam_map, one_observation_per_keyframe: bool = True) -> None:
    """The bookkeeping invariants of slam.map.Map: observation rows, keyframe associations and counts agree.

    `one_observation_per_keyframe=False` leaves out the check that no keyframe observes a point twice, for
    maps built by the whole pipeline (see test_tracking's test on one keypoint per map point).
    """
    import numpy as np

    n = slam_map.obs.size
    alive = slam_map.obs.alive[:n]
    kf, kp = slam_map.obs.kf[:n][alive], slam_map.obs.kp[:n][alive]
    pt, weight = slam_map.obs.pt[:n][alive], slam_map.obs.weight[:n][alive]
    for k, i, p in zip(kf.tolist(), kp.tolist(), pt.tolist()):
        assert slam_map.keyframes[k].point_ids[i] == p, f"row ({k},{i},{p}) not mirrored in the keyframe"
        assert slam_map.keyframes[k].alive, f"culled keyframe {k} still observes point {p}"
    rows = set(zip(kf.tolist(), kp.tolist()))
    for keyframe in slam_map.keyframes:
        for i in np.flatnonzero(keyframe.point_ids >= 0).tolist():
            assert (keyframe.id, i) in rows, f"keyframe {keyframe.id} keypoint {i} has a point but no observation"
    if one_observation_per_keyframe:
        assert len(set(zip(kf.tolist(), pt.tolist()))) == len(kf), "a keyframe observes one point twice"
    assert slam_map.points.alive[pt].all(), "an observation of a dead point is alive"
    size = slam_map.points.size
    expected = np.bincount(pt, weights=weight, minlength=size).astype(np.int64)
    np.testing.assert_array_equal(slam_map.points.n_obs[:size], expected)
    assert (slam_map.points.n_obs[slam_map.alive_point_ids()] > 0).all(), "a live point has no observation"
    # Each point's list of observation rows (first_obs, obs.next, last_obs) holds exactly its live rows.
    live_rows = np.flatnonzero(alive)
    for p in np.unique(pt).tolist():
        listed, row = [], int(slam_map.points.first_obs[p])
        while row >= 0 and len(listed) <= n:
            listed.append(row)
            row = int(slam_map.obs.next[row])
        assert sorted(listed) == live_rows[pt == p].tolist(), f"point {p} lists rows {listed}"
        assert slam_map.points.last_obs[p] == listed[-1], f"point {p}'s last row is not its list's end"
    unobserved = np.setdiff1d(np.arange(size), pt)
    assert (slam_map.points.first_obs[unobserved] == -1).all(), "a point without observations lists rows"


@pytest.fixture(scope="session")
def check_map():
    """A function asserting the Map's invariants (see _check_map_consistent)."""
    return _check_map_consistent


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> str:
    """Torch device for the learned-feature tests: the CPU always, CUDA where torch sees a GPU."""
    if request.param == "cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    return request.param
