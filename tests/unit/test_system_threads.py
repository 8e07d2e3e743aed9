"""The mapping thread beside tracking: normal runs, a failing mapper, and stop signals during `slam run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from slam.cli import main
from slam.config import load_config
from slam.errors import SlamRuntimeError
from slam.io import open_sequence
from slam.mapping import LocalMapper
from slam.runner import run_sequence
from slam.system import System
from slam.trajectory import read_tum

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "synthetic_rgbd.yaml"


def failing_process(self, kf_id):
    raise RuntimeError(f"injected failure at keyframe {kf_id}")


@pytest.mark.timeout(120)
def test_threaded_system_maps_every_keyframe(synthetic_rgbd_seq, check_map):
    config = load_config(CONFIG)
    sequence = open_sequence(synthetic_rgbd_seq, config)
    system = System(config, sequence.camera, threaded=True).start()
    states = [system.process(data).state.value for data in sequence.frames()]
    system.shutdown(finish_mapping=True)
    assert states == ["ok"] * len(sequence)
    assert system.mapper.stats.keyframes == len(system.map.keyframes) >= 3
    assert system.mapper.queued() == 0 and system.failure is None
    check_map(system.map)


@pytest.mark.timeout(60)
def test_mapping_thread_failure_reaches_tracking_as_runtime_error(synthetic_rgbd_seq, monkeypatch):
    monkeypatch.setattr(LocalMapper, "process", failing_process)
    config = load_config(CONFIG)
    sequence = open_sequence(synthetic_rgbd_seq, config)
    system = System(config, sequence.camera, threaded=True).start()
    frames = iter(sequence.frames())
    system.process(next(frames))  # the first frame makes keyframe 0 and hands it to the mapping thread
    deadline = time.monotonic() + 30
    while system.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(SlamRuntimeError, match="mapping thread failed: RuntimeError: injected failure at keyframe 0"):
        system.process(next(frames))
    frames.close()


@pytest.mark.timeout(60)
def test_mapping_thread_failure_ends_the_run_with_outputs(synthetic_rgbd_seq, monkeypatch, tmp_path):
    monkeypatch.setattr(LocalMapper, "process", failing_process)
    result = run_sequence(load_config(CONFIG), synthetic_rgbd_seq, tmp_path, progress=False, threaded=True)
    assert result.exit_code == 1
    assert "mapping thread" in result.error and "injected failure" in result.error and "\n" not in result.error
    summary = json.loads((tmp_path / "run.json").read_text())
    assert 1 <= summary["frames"] < 40  # stopped at the first frame after the failure
    trajectory = read_tum(tmp_path / "trajectory.tum")
    assert len(trajectory) == summary["tracked_frames"] == summary["frames"]


@pytest.mark.timeout(60)
def test_mapping_thread_failure_through_the_cli(synthetic_rgbd_seq, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(LocalMapper, "process", failing_process)
    code = main(["run", str(CONFIG), "--data", str(synthetic_rgbd_seq), "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("slam run: error: mapping thread failed")
    assert (tmp_path / "trajectory.tum").is_file()


class _StderrReader:
    """Collects a subprocess's stderr in a thread, so the test can wait for text without blocking."""

    def __init__(self, stream):
        self.text = ""
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._stream.fileno(), 4096):
            self.text += chunk.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.text and time.monotonic() < deadline:
            time.sleep(0.02)
        return needle in self.text

    def finish(self) -> str:
        self._thread.join(timeout=5)
        return self.text


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_stop_signal_during_run_writes_outputs(synthetic_rgbd_seq, tmp_path, sig, code, name):
    out = tmp_path / "run"
    # No --quiet: the progress bar appears once the run loop (and its signal handlers) has started.
    proc = subprocess.Popen([sys.executable, "-m", "slam", "run", str(CONFIG), "--data", str(synthetic_rgbd_seq),
                             "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reader = _StderrReader(proc.stderr)
        assert reader.wait_for("frame", timeout=60), reader.text
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = reader.finish()
    assert proc.returncode == code, stderr
    assert f"stopped by signal {name}; outputs written" in stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "run.json").read_text())
    assert 1 <= summary["frames"] < 40
    trajectory = read_tum(out / "trajectory.tum")
    assert len(trajectory) == summary["tracked_frames"]
    assert np.isfinite(trajectory.poses).all()
