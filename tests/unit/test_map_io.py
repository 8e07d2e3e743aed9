"""Map files: save, load, localise in them, and refuse broken ones in one line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import open_sequence
from slam.map_io import load_map, save_map
from slam.runner import run_sequence
from slam.synthetic import render_sequence

REPO = Path(__file__).resolve().parents[2]
SYNC = ["mapping.threaded=false", "dataset.realtime=false"]


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A 60-frame synthetic RGB-D run with its map saved."""
    root = tmp_path_factory.mktemp("maps")
    data = render_sequence(root / "orbit", frames=60, seed=0, trajectory="orbit", width=320, height=240)
    config = load_config(REPO / "configs" / "synthetic_rgbd.yaml", SYNC)
    result = run_sequence(config, data, root / "first", progress=False, save_map=root / "map.npz")
    assert result.exit_code == 0
    return data, config, result, root / "map.npz"


def test_a_saved_map_loads_with_the_same_keyframes_points_and_observations(mapped):
    data, config, result, path = mapped
    camera = open_sequence(data, config).camera
    m = load_map(path, camera, "rgbd")
    assert len(m.alive_keyframe_ids()) == result.summary["keyframes"]
    assert len(m.alive_point_ids()) == result.summary["map_points"]
    # Every point is observed, and the keyframes' point associations agree with the observations.
    ids = m.alive_point_ids()
    assert np.all(m.points.n_obs[ids] >= 1)
    for kf_id in m.alive_keyframe_ids().tolist():
        kf = m.keyframes[kf_id]
        assert np.all(m.points.alive[kf.point_ids[kf.point_ids >= 0]])
    # Saving the loaded map again gives the same content.
    again = save_map(path.parent / "again.npz", m, camera, "rgbd")
    with np.load(path) as a, np.load(again) as b:
        for key in ("kf_pose", "kp_descriptor"):
            assert np.array_equal(a[key], b[key])
        assert np.array_equal(_rows(a["pt_xyz"]), _rows(b["pt_xyz"]))


def test_localising_in_the_saved_map_is_as_accurate_and_leaves_it_unchanged(mapped, tmp_path):
    data, config, result, path = mapped
    out = run_sequence(config, data, tmp_path / "again", progress=False, load_map=path, localize=True,
                       save_map=tmp_path / "after.npz")
    assert out.exit_code == 0
    s = out.summary
    assert s["tracked_frames"] >= s["frames"] - 2  # relocalised at once
    assert s["ate_rmse_m"] <= max(2 * result.summary["ate_rmse_m"], 0.01)
    with np.load(path) as a, np.load(tmp_path / "after.npz") as b:
        assert np.array_equal(a["kf_pose"], b["kf_pose"])
        assert np.array_equal(_rows(a["pt_xyz"]), _rows(b["pt_xyz"]))


def test_continuing_to_map_from_a_loaded_map_tracks_the_sequence(mapped, tmp_path):
    data, config, _, path = mapped
    out = run_sequence(config, data, tmp_path / "more", progress=False, load_map=path)
    assert out.exit_code == 0 and out.summary["tracked_frames"] >= out.summary["frames"] - 2


def _rows(a: np.ndarray) -> np.ndarray:
    """Rows in a fixed order: a reloaded map numbers its points by first observer."""
    return a[np.lexsort(a.T[::-1])]


def _one_line(exc: SlamInputError, path: Path, phrase: str) -> None:
    text = str(exc)
    assert "\n" not in text and str(path) in text and phrase in text


def test_broken_map_files_are_refused_in_one_line(mapped, tmp_path):
    data, config, _, path = mapped
    camera = open_sequence(data, config).camera
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SlamInputError) as e:
        load_map(truncated, camera, "rgbd")
    _one_line(e.value, truncated, "truncated")
    with pytest.raises(SlamInputError) as e:
        load_map(tmp_path / "absent.npz", camera, "rgbd")
    _one_line(e.value, tmp_path / "absent.npz", "not found")
    with pytest.raises(SlamInputError) as e:
        load_map(path, camera, "stereo")
    _one_line(e.value, path, "mode rgbd")


def test_a_newer_format_version_is_refused(mapped, tmp_path):
    data, config, _, path = mapped
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 99
    arrays["meta"] = np.array(json.dumps(meta))
    newer = tmp_path / "newer.npz"
    np.savez(newer, **arrays)
    with pytest.raises(SlamInputError) as e:
        load_map(newer, open_sequence(data, config).camera, "rgbd")
    _one_line(e.value, newer, "version 99")


def test_saving_replaces_the_file_atomically(mapped, tmp_path):
    data, config, _, path = mapped
    camera = open_sequence(data, config).camera
    m = load_map(path, camera, "rgbd")
    target = tmp_path / "map.npz"
    target.write_bytes(b"old")
    save_map(target, m, camera, "rgbd")
    assert zipfile.is_zipfile(target)
    assert [p.name for p in tmp_path.iterdir()] == ["map.npz"]  # no temporary file left behind


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_map_files_give_only_the_documented_error(mapped, tmp_path, data):
    source, config, _, path = mapped
    camera = open_sequence(source, config).camera
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    key = data.draw(st.sampled_from(sorted(arrays)))
    mutation = data.draw(st.sampled_from(["drop", "shrink", "garbage"]))
    if mutation == "drop":
        del arrays[key]
    elif mutation == "shrink":
        arrays[key] = arrays[key][: max(0, len(arrays[key]) // 2)] if arrays[key].ndim else np.array("{}")
    else:
        arrays[key] = np.array(data.draw(st.text(max_size=20)))
    broken = tmp_path / "broken.npz"
    np.savez(broken, **arrays)
    try:
        load_map(broken, camera, "rgbd")
    except SlamInputError as exc:
        assert "\n" not in str(exc)
