"""`slam live` end to end on a fake camera: a video of a rendered sequence served through the capture thread,
with tracking slowed down so frames must be dropped; its recording replays through `slam run`."""

from __future__ import annotations

import json
import os
import signal
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.cli import main
from slam.config import load_config
from slam.evaluation import evaluate
from slam.io.calibration import read_calibration, write_calibration
from slam.io.tum import read_listing
from slam.live.capture import CaptureSource
from slam.live.session import LiveOptions, run_live
from slam.runner import run_sequence
from slam.synthetic import render_sequence
from slam.system import System
from slam.trajectory import read_tum

REPO = Path(__file__).resolve().parents[2]
LIVE_CONFIG = REPO / "configs" / "live_mono.yaml"
FRAMES, FPS = 90, 30.0
SLOW_DOWN_S = 0.03  # added to every tracked frame: with tracking itself, slower than the 30 Hz camera


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(video, calibration YAML, sequence folder with ground truth) of a 320x240 orbit at 30 Hz."""
    root = tmp_path_factory.mktemp("fake_camera")
    sequence = render_sequence(root / "orbit", frames=FRAMES, seed=0, trajectory="orbit", width=320, height=240)
    video = root / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 240))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    for path in sorted((sequence / "rgb").iterdir()):
        writer.write(cv2.imread(str(path)))
    writer.release()
    write_calibration(root / "camera.yaml", read_calibration(sequence / "calibration.yaml"))
    return video, root / "camera.yaml", sequence


def slowed_process(monkeypatch, on_frame=None) -> None:
    original = System.process

    def process(self, data):
        result = original(self, data)
        time.sleep(SLOW_DOWN_S)
        if on_frame is not None:
            on_frame(data)
        return result

    monkeypatch.setattr(System, "process", process)


@pytest.fixture(scope="module")
def live_run(fake_camera, tmp_path_factory):
    video, calib, _ = fake_camera
    root = tmp_path_factory.mktemp("live")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        slowed_process(monkeypatch)
        options = LiveOptions(
            CaptureSource.video(video), calib, root / "out", record_dir=root / "recording", log_every_s=0.5
        )
        result = run_live(load_config(LIVE_CONFIG), options, log=lines.append)
    return result, lines


def check_trajectory(path: Path, groundtruth: Path, min_poses: int) -> np.ndarray:
    trajectory = read_tum(path)
    assert len(trajectory) >= min_poses
    np.testing.assert_allclose(trajectory.timestamps * FPS, np.round(trajectory.timestamps * FPS), atol=1e-3)
    ate = evaluate(read_tum(groundtruth), trajectory, align="sim3").ate_rmse_m
    assert ate < 0.05, ate  # measured 6-18 mm (monocular, Sim(3)) on a loaded 2-core machine; the path is 1.95 m
    return trajectory.timestamps


def test_fake_camera_runs_live_with_frames_dropped_and_latency_bounded(live_run, fake_camera):
    result, lines = live_run
    assert result.exit_code == 0 and result.error == ""
    summary = json.loads((result.out_dir / "run.json").read_text())
    live = summary["live"]
    assert live["frames_captured"] == FRAMES  # the whole video was played
    assert live["frames_delivered"] == summary["frames"] and live["frames_dropped"] > 0
    assert live["frames_delivered"] + live["frames_dropped"] == FRAMES
    # Newest-frame hand-over: a queue would fall seconds behind by the end of the video.
    assert 0 < live["latency_ms_p50"] < 500 and live["latency_ms_p50"] <= live["latency_ms_p95"]
    assert any(
        line.startswith("live: ") and "fps" in line and "dropped" in line and "tracking" in line for line in lines
    ), lines
    check_trajectory(
        result.out_dir / "trajectory.tum",
        fake_camera[2] / "groundtruth.txt",
        min_poses=live["frames_delivered"] * 2 // 3,
    )


def test_the_recording_replays_through_slam_run(live_run, fake_camera, tmp_path):
    result, _ = live_run
    recording = Path(result.summary["live"]["record"]["folder"])
    assert result.summary["live"]["record"]["frames"] == result.summary["frames"]
    assert read_calibration(recording / "calibration.yaml") == read_calibration(fake_camera[1])
    replay = run_sequence(load_config(LIVE_CONFIG, ["dataset.realtime=false"]), recording, tmp_path, progress=False)
    assert replay.exit_code == 0 and replay.summary["frames"] == result.summary["frames"]
    replayed = check_trajectory(
        tmp_path / "trajectory.tum", fake_camera[2] / "groundtruth.txt", min_poses=replay.summary["frames"] * 2 // 3
    )
    recorded = set(np.round(read_listing(recording / "rgb.txt").timestamps, 6))
    assert len(recorded) == result.summary["frames"]  # exactly the frames tracking was handed
    assert set(np.round(read_tum(result.out_dir / "trajectory.tum").timestamps, 6)) <= recorded
    assert set(np.round(replayed, 6)) <= recorded


def test_ctrl_c_ends_a_live_run_cleanly_with_the_trajectory_saved(fake_camera, tmp_path, monkeypatch, capsys):
    video, calib, _ = fake_camera
    seen = []

    def interrupt_at_frame_20(data):
        seen.append(data.index)
        if len(seen) == 20:
            os.kill(os.getpid(), signal.SIGINT)  # caught by the runner: finishes this frame, then stops

    slowed_process(monkeypatch, interrupt_at_frame_20)
    out = tmp_path / "out"
    code = main(["live", "--video", str(video), "--calib", str(calib), "--out", str(out),
                 "--save-map", str(out / "map.npz")])
    captured = capsys.readouterr()
    assert code == 0 and "stopped by Ctrl-C; outputs written" in captured.err
    assert zipfile.is_zipfile(out / "map.npz")  # the map is saved too
    summary = json.loads((out / "run.json").read_text())
    assert summary["frames"] == 20 and summary["live"]["frames_captured"] < FRAMES
    assert 0 < len(read_tum(out / "trajectory.tum")) <= 20


def test_slam_run_reads_a_video_file_with_a_calibration(fake_camera, tmp_path, capsys):
    video, calib, sequence = fake_camera
    args = ["run", str(LIVE_CONFIG), "--data", str(video), "--calib", str(calib), "--out", str(tmp_path)]
    args += ["--set", "dataset.format=video", "--quiet"]  # played at its recorded 30 Hz, as `slam run` does
    assert main(args) == 0
    assert json.loads((tmp_path / "run.json").read_text())["frames"] == FRAMES
    check_trajectory(tmp_path / "trajectory.tum", sequence / "groundtruth.txt", min_poses=FRAMES * 2 // 3)


def test_live_refuses_what_it_cannot_do(fake_camera, tmp_path, capsys):
    video, calib, _ = fake_camera
    base = ["live", "--video", str(video), "--calib", str(calib), "--out", str(tmp_path / "out")]
    assert main([*base, "--config", str(REPO / "configs" / "synthetic_rgbd.yaml")]) == 2
    assert "slam live needs mode mono" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main([*base, "--record", str(tmp_path / "busy")]) == 2
    assert "recording folder exists and is not empty" in capsys.readouterr().err
