"""The viewer beside a real run on the synthetic sequence: recording, a viewer that dies, the quit and pause keys."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.config import ViewerConfig, load_config
from slam.errors import SlamInputError
from slam.io import load_groundtruth
from slam.runner import run_sequence
from slam.synthetic import ensure_sequence
from slam.trajectory import read_tum
from slam.viewer import session
from slam.viewer.channel import take_all
from slam.viewer.live import KeyActions
from slam.viewer.publisher import SnapshotPublisher
from slam.viewer.record import OVERVIEW_SIZE
from slam.viewer.runfiles import load_run
from slam.viewer.scene import GROUNDTRUTH_RGB, TRAJECTORY_RGB, build_scene, overview_view
from tests.unit.viewer_checks import of_color, points_check, stray_share, trajectory_check

from .test_system_threads import CONFIG

FRAMES = 30


@pytest.fixture(scope="module")
def sequence_dir(tmp_path_factory):
    return ensure_sequence(tmp_path_factory.mktemp("synthetic-cache"), frames=FRAMES)


def config(mode: str, *extra: str):
    return load_config(CONFIG, [f"viewer.mode={mode}", "viewer.record_every=10", "dataset.realtime=false", *extra])


def check_overview(out, sequence_dir) -> None:
    """OUT/overview.png shows the run's final trajectory, map and ground truth where they project."""
    snapshot = load_run(out, load_groundtruth(sequence_dir))
    image = cv2.cvtColor(cv2.imread(str(out / "overview.png")), cv2.COLOR_BGR2RGB)
    view = overview_view(snapshot, *OVERVIEW_SIZE)
    assert image.shape == (OVERVIEW_SIZE[1], OVERVIEW_SIZE[0], 3)
    covered, on_line = trajectory_check(image, view, snapshot.trajectory, TRAJECTORY_RGB)
    assert covered > 0.8 and on_line > 0.8
    assert points_check(image, view, snapshot.points) > 0.8
    assert stray_share(image, view, build_scene(snapshot)) < 0.02
    assert of_color(image, GROUNDTRUTH_RGB, tol=20).sum() > 0  # ground truth under (and beside) the estimate


@pytest.mark.timeout(180)
def test_record_mode_writes_frames_and_an_overview(sequence_dir, tmp_path):
    result = run_sequence(config("record"), sequence_dir, tmp_path, progress=False)
    assert result.exit_code == 0
    frames = sorted(p.name for p in (tmp_path / "frames").glob("*.png"))
    assert frames == ["000000.png", "000010.png", "000020.png"]
    viewer = json.loads((tmp_path / "run.json").read_text())["viewer"]
    assert viewer["frames_written"] == 3 and viewer["snapshots_sent"] == 3 and not viewer["ended_early"]
    check_overview(tmp_path, sequence_dir)


class KillViewerAt:
    """A run observer that kills the viewer process (SIGKILL, as a crash) at a given frame."""

    def __init__(self, frame: int):
        self.frame = frame
        self.killed = False

    def on_frame(self, data, result) -> bool:
        if data.index == self.frame:
            for child in multiprocessing.active_children():
                if child.name.startswith("slam-viewer"):
                    os.kill(child.pid, signal.SIGKILL)
                    child.join(timeout=10)
                    self.killed = True
        return False

    def summary(self):
        return {}


@pytest.mark.timeout(180)
def test_a_viewer_that_dies_does_not_stop_or_hold_the_run(sequence_dir, tmp_path):
    observer = KillViewerAt(5)
    result = run_sequence(config("record"), sequence_dir, tmp_path, progress=False, observer=observer)
    assert observer.killed and result.exit_code == 0 and result.error == ""
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == summary["tracked_frames"] == FRAMES
    assert len(read_tum(tmp_path / "trajectory.tum")) == FRAMES
    viewer = summary["viewer"]
    assert viewer["ended_early"] and viewer["ended_at_frame"] == 6  # noticed at the frame it died
    assert viewer["snapshots_sent"] == 1  # frame 0 only: nothing is built for a dead viewer
    assert viewer["tracking_thread_ms_max"] < 1000  # no frame waited on it (a blocked put would never return)
    check_overview(tmp_path, sequence_dir)  # drawn in the run's process instead


def press_keys_after_snapshots(queue, controls, settings) -> None:
    """Stands in for the live windows (CI has no display): pause, resume, then quit, as the keys would."""
    keys = KeyActions(controls)
    if not wait_for_snapshots(queue, 2):
        return
    keys.press(ord(" "))
    (Path(settings.out_dir) / "paused").touch()
    time.sleep(1.0)
    keys.press(ord(" "))
    if wait_for_snapshots(queue, 1):
        keys.press(ord("q"))


def wait_for_snapshots(queue, count: int, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while count > 0 and time.monotonic() < deadline:
        items = take_all(queue, 1.0)
        if any(item.final for item in items):
            return False
        count -= len(items)
    return count <= 0


class WaitForFile:
    """A run observer holding the run at one frame until a file appears (the stand-in viewer has paused)."""

    def __init__(self, frame: int, path: Path):
        self.frame, self.path = frame, path

    def on_frame(self, data, result) -> bool:
        deadline = time.monotonic() + 60
        while data.index == self.frame and not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return False

    def summary(self):
        return {}


@pytest.mark.timeout(180)
def test_pause_holds_the_run_and_quit_ends_it_with_outputs(sequence_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(session.TARGETS, "live", press_keys_after_snapshots)
    monkeypatch.setattr(session, "window_problem", lambda: None)
    result = run_sequence(
        config("live", "viewer.interval_ms=0"),
        sequence_dir,
        tmp_path,
        progress=False,
        # The observer runs before the viewer: frame 2 waits there until the pause key is down, so the pause
        # holds frame 1 or 2 and the quit key, pressed after a snapshot sent since, stops the run at frame 2 or
        # later. (Held at frame 3, a fast run could reach frame 2's pause check first and be quit there.)
        observer=WaitForFile(2, tmp_path / "paused"),
    )
    assert result.exit_code == 0 and result.error == ""
    summary = json.loads((tmp_path / "run.json").read_text())
    assert 3 <= summary["frames"] < FRAMES  # held while paused, stopped by the quit key soon after
    assert len(read_tum(tmp_path / "trajectory.tum")) == summary["tracked_frames"] == summary["frames"]
    viewer = summary["viewer"]
    assert viewer["quit"] and not viewer["ended_early"]
    assert viewer["paused_s"] > 0.8


def test_live_mode_without_a_display_is_refused_in_one_line(sequence_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    out = tmp_path / "out"
    code = main(["run", str(CONFIG), "--data", str(sequence_dir), "--out", str(out), "--viewer", "live", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs a display" in err[0] and "--viewer record" in err[0]
    assert not out.exists()


def test_bad_viewer_settings_are_refused():
    with pytest.raises(SlamInputError, match="viewer.record_every"):
        session.check_viewer(ViewerConfig(mode="record", record_every=0))
    with pytest.raises(SlamInputError, match="viewer.interval_ms"):
        session.check_viewer(ViewerConfig(mode="live", interval_ms=-1))


@pytest.mark.timeout(180)
def test_slam_view_renders_a_finished_run(sequence_dir, tmp_path, monkeypatch, capsys):
    run_sequence(config("none"), sequence_dir, tmp_path / "run", progress=False)
    png = tmp_path / "view.png"
    assert main(["view", str(tmp_path / "run"), "--gt", str(sequence_dir), "--png", str(png)]) == 0
    assert str(png) in capsys.readouterr().out
    snapshot = load_run(tmp_path / "run", load_groundtruth(sequence_dir))
    image = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    covered, on_line = trajectory_check(
        image, overview_view(snapshot, *OVERVIEW_SIZE), snapshot.trajectory, TRAJECTORY_RGB
    )
    assert covered > 0.8 and on_line > 0.8
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main(["view", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--png" in err[0]
    assert main(["view", str(tmp_path / "absent"), "--png", str(png)]) == 2
    assert "run folder not found" in capsys.readouterr().err
    np.testing.assert_equal(len(snapshot.trajectory), FRAMES)


@pytest.mark.timeout(180)
def test_a_failing_snapshot_is_reported_not_raised(sequence_dir, tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("injected snapshot failure")

    monkeypatch.setattr(SnapshotPublisher, "build", broken)
    result = run_sequence(config("record"), sequence_dir, tmp_path, progress=False)
    assert result.exit_code == 0
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == summary["tracked_frames"] == FRAMES
    assert summary["viewer"]["error"] == "RuntimeError: injected snapshot failure"
    assert summary["viewer"]["snapshots_sent"] == 0
    check_overview(tmp_path, sequence_dir)  # the final snapshot is another path: still drawn
