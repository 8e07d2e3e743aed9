"""Failures inside a run (reader thread, tracking, local mapping threaded or not, final BA) and bad frames
mid-run: the run ends promptly with one clear line, writes what it had, and leaves no thread running."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from slam.cli import main
from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import open_sequence
from slam.io.base import MAX_CONSECUTIVE_BAD_FRAMES
from slam.mapping import LocalMapper
from slam.runner import run_sequence
from slam.tracking import Tracker
from slam.trajectory import read_tum

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "synthetic_rgbd.yaml"
FAIL_AT = 12


def config(*overrides: str):
    return load_config(CONFIG, ["dataset.realtime=false", *overrides])


def failing_load(sequence, at: int, exc: Exception):
    """The sequence with `load` raising `exc` at frame `at` (in the reader thread)."""
    load = sequence.load

    def broken(i: int):
        if i == at:
            raise exc
        return load(i)

    sequence.load = broken
    return sequence


def run(sequence_or_path, out: Path, cfg=None):
    """run_sequence, and the threads it left behind (tqdm's idle monitor, one per process, is tqdm's own)."""
    before = set(threading.enumerate())
    result = run_sequence(cfg or config(), sequence_or_path, out, progress=False)
    leftover = [t.name for t in threading.enumerate() if t not in before and t.is_alive() and t.name != "tqdm_monitor"]
    return result, leftover


def check_outputs(out: Path, max_frames: int) -> dict:
    summary = json.loads((out / "run.json").read_text())
    assert 1 <= summary["frames"] <= max_frames
    trajectory = read_tum(out / "trajectory.tum")
    assert len(trajectory) == summary["tracked_frames"] and np.isfinite(trajectory.poses).all()
    assert (out / "map.ply").is_file() and (out / "keyframes.tum").is_file()
    return summary


@pytest.mark.timeout(120)
def test_reader_thread_failure(synthetic_rgbd_seq, tmp_path):
    sequence = failing_load(open_sequence(synthetic_rgbd_seq, config()), FAIL_AT, MemoryError("injected"))
    result, leftover = run(sequence, tmp_path)
    assert result.exit_code == 1 and leftover == []
    assert result.error.startswith("reader thread failed: MemoryError: injected (traceback in ")
    assert check_outputs(tmp_path, FAIL_AT)["frames"] == FAIL_AT  # every frame before the failure
    assert "MemoryError: injected" in (tmp_path / "traceback.txt").read_text()


@pytest.mark.timeout(120)
def test_tracking_failure(synthetic_rgbd_seq, tmp_path, monkeypatch):
    track = Tracker.track

    def failing_track(self, frame):
        if frame.id == FAIL_AT:
            raise ValueError("injected\nover two lines")
        return track(self, frame)

    monkeypatch.setattr(Tracker, "track", failing_track)
    result, leftover = run(synthetic_rgbd_seq, tmp_path)
    assert result.exit_code == 1 and leftover == []
    assert result.error.startswith("tracking failed: ValueError: injected over two lines (traceback in ")
    summary = check_outputs(tmp_path, FAIL_AT)
    assert summary["frames"] == FAIL_AT and summary["error"].startswith("tracking failed")
    assert "failing_track" in (tmp_path / "traceback.txt").read_text()


def failing_process(self, kf_id):
    if kf_id >= 1:
        raise RuntimeError(f"injected at keyframe {kf_id}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("threaded, message", [(True, "mapping thread failed"), (False, "local mapping failed")])
def test_mapping_failure(synthetic_rgbd_seq, tmp_path, monkeypatch, threaded, message):
    monkeypatch.setattr(LocalMapper, "process", failing_process)
    result, leftover = run(synthetic_rgbd_seq, tmp_path, config(f"mapping.threaded={str(threaded).lower()}"))
    assert result.exit_code == 1 and leftover == []
    assert result.error.startswith(f"{message}: RuntimeError: injected at keyframe 1")
    summary = check_outputs(tmp_path, 39)
    assert summary["keyframes"] >= 2  # keyframe 1 was made, its mapping failed


@pytest.mark.timeout(120)
def test_final_bundle_adjustment_failure(synthetic_rgbd_seq, tmp_path, monkeypatch):
    def failing_ba(*args, **kwargs):
        raise FloatingPointError("injected")

    monkeypatch.setattr("slam.system.adjust_whole_map", failing_ba)
    result, leftover = run(synthetic_rgbd_seq, tmp_path, config())
    assert result.exit_code == 1 and leftover == []
    assert result.error.startswith("final bundle adjustment failed: FloatingPointError: injected")
    assert check_outputs(tmp_path, 40)["frames"] == 40


@pytest.mark.timeout(120)
def test_unreadable_stretch_mid_run_stops_with_outputs(tmp_path, capsys):
    from slam.synthetic import render_sequence

    n = MAX_CONSECUTIVE_BAD_FRAMES + 15
    folder = render_sequence(tmp_path / "seq", frames=n, seed=0, width=320, height=240)
    for image in sorted((folder / "rgb").iterdir())[10:]:
        image.write_bytes(b"")
    out = tmp_path / "out"
    code = main(
        ["run", str(CONFIG), "--data", str(folder), "--out", str(out), "--quiet", "--set", "dataset.realtime=false"]
    )
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == MAX_CONSECUTIVE_BAD_FRAMES + 1  # one warning per skipped frame, then the error
    assert all(line.startswith("slam: warning: ") and "empty file; frame skipped" in line for line in err[:-1])
    assert err[-1].startswith(f"slam run: error: {folder / 'rgb'}") and "frames in a row cannot be read" in err[-1]
    summary = check_outputs(out, 10)
    assert summary["frames"] == 10 and summary["skipped_frames"] == MAX_CONSECUTIVE_BAD_FRAMES


def test_a_run_that_never_starts_a_map_says_why_and_exits_3(synthetic_rgbd_seq, tmp_path):
    """No depth anywhere: no frame can start an RGB-D map. The run must not end as a silent success."""
    sequence = open_sequence(synthetic_rgbd_seq, config())
    load = sequence.load

    def no_depth(i: int):
        data = load(i)
        data.depth = np.zeros_like(data.depth)
        return data

    sequence.load = no_depth
    out = tmp_path / "never"
    result = run_sequence(config(), sequence, out, max_frames=8, progress=False)
    assert result.exit_code == 3
    assert "no map was started in 8 frames" in result.error and "0 with depth" in result.error
    summary = json.loads((out / "run.json").read_text())
    assert summary["tracked_frames"] == 0 and summary["error"] == result.error
    assert (out / "trajectory.tum").is_file()
    with pytest.raises(SlamInputError, match="no poses"):  # written, and empty
        read_tum(out / "trajectory.tum")


def test_a_small_feature_budget_still_starts_the_map(synthetic_rgbd_seq, tmp_path):
    """The RGB-D start needs at most half the feature budget: 400 features (below ORB-SLAM's fixed 500) start
    the map at the first frame instead of never."""
    result = run_sequence(config("features.n_features=400", "mapping.threaded=false"), synthetic_rgbd_seq,
                          tmp_path / "small", max_frames=6, progress=False)
    assert result.exit_code == 0 and result.error == ""
    assert result.summary["initialized_frame"] == 0 and result.summary["tracked_frames"] == 6


def test_features_without_a_vocabulary_say_loop_closing_is_off(synthetic_rgbd_seq, tmp_path, capsys):
    """SIFT's float descriptors have no packaged vocabulary: loop closing and relocalisation cannot run, and the
    run says so at start-up and in run.json instead of switching them off silently."""
    result = run_sequence(config("features.type=sift"), synthetic_rgbd_seq, tmp_path / "sift", max_frames=3,
                          progress=False)
    assert result.exit_code == 0
    warning = "loop closing and relocalisation are off: no place-recognition vocabulary for sift descriptors"
    assert warning in capsys.readouterr().err
    assert result.summary["loop_closing"].startswith(f"off: {warning}")
    orb = run_sequence(config(), synthetic_rgbd_seq, tmp_path / "orb", max_frames=3, progress=False)
    assert orb.summary["loop_closing"] == "on"


@pytest.mark.parametrize(("overrides", "state"), [
    ((), "on"),
    (("loop_closing.monocular=false",), "off: loop_closing.monocular is false"),
    (("mapping.max_keyframes=10",), "off: loop closing is off: a sliding-window map (mapping.max_keyframes) keeps "
                                    "no loop to close"),
    (("loop_closing.enabled=false",), "off: loop_closing.enabled is false"),
])
def test_run_json_says_why_monocular_loop_closing_is_off(synthetic_rgbd_seq, tmp_path, overrides, state):
    mono = load_config(REPO / "configs" / "synthetic_mono.yaml", ["mapping.threaded=false", *overrides])
    result = run_sequence(mono, synthetic_rgbd_seq, tmp_path, max_frames=2, progress=False)
    assert result.summary["loop_closing"] == state


@pytest.mark.parametrize("fail", [False, True])
def test_start_up_objects_are_out_of_the_collectors_sight_during_the_run_only(synthetic_rgbd_seq, tmp_path,
                                                                              monkeypatch, fail):
    """The objects loaded before the first frame are frozen (gc.freeze) while frames are tracked, so that a full
    collection does not stop the process to walk them; the collector has them back after the run, failed or not."""
    import gc

    seen = []
    track = Tracker.track

    def tracked(self, frame):
        seen.append(gc.get_freeze_count())
        if fail and frame.id == 3:
            raise RuntimeError("tracking broke")
        return track(self, frame)

    monkeypatch.setattr(Tracker, "track", tracked)
    result = run_sequence(config(), synthetic_rgbd_seq, tmp_path / "gc", max_frames=5, progress=False)
    assert result.exit_code == (1 if fail else 0)
    assert len(seen) == (4 if fail else 5) and min(seen) > 10_000
    assert gc.get_freeze_count() == 0
