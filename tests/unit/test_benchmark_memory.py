"""tools/benchmark_memory.py: the looped sequence it replays, and one tiny run end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from slam.config import load_config
from slam.io import open_sequence
from slam.synthetic import ensure_sequence

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "benchmark_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_memory", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_looped_sequence_replays_frames_with_new_timestamps(bench, tmp_path):
    data = ensure_sequence(tmp_path, frames=6, seed=0, trajectory="loop", width=64, height=48)
    base = open_sequence(data, load_config(REPO / "configs" / "synthetic_rgbd.yaml"))
    looped = bench.looped(base, frames=13, period=5)
    frames = list(looped.frames())
    assert [f.index for f in frames] == list(range(13))
    assert np.allclose(np.diff([f.timestamp for f in frames]), base.timestamps[1] - base.timestamps[0])
    assert np.array_equal(frames[2].image, frames[7].image) and np.array_equal(frames[7].depth, frames[12].depth)
    assert not np.array_equal(frames[2].image, frames[3].image)


def test_growth_is_taken_over_the_second_half(bench):
    def sample(frames, rss):
        return bench.Sample(frames, 0.0, rss, rss, 0, 0, 0, 0, 0, frames, frames)

    samples = [sample(0, 100.0), sample(500, 180.0), sample(1000, 190.0), sample(2000, 200.0)]
    assert bench.growth_mb_per_1000_frames(samples) == pytest.approx(10.0)  # 190 -> 200 MB over 1000 frames


@pytest.mark.timeout(300)
def test_tiny_run_writes_samples_and_table(bench, tmp_path, capsys):
    out = tmp_path / "out"
    args = "--frames 40 --loop-frames 21 --every 20 --max-keyframes 4 --width 320 --height 240 --quiet".split()
    code = bench.main([*args, "--cache", str(tmp_path / "cache"), "--out", str(out)])
    assert code == 0
    result = json.loads((out / "memory.json").read_text())
    assert [s["frames"] for s in result["samples"]] == [0, 20, 40]
    last = result["samples"][-1]
    assert last["tracked"] == 40 and last["trajectory_poses"] == 40 and 1 <= last["keyframes_alive"] <= 4
    assert all(s["rss_mb"] > 0 and s["peak_rss_mb"] >= s["rss_mb"] * 0.5 for s in result["samples"])
    assert "mapping.max_keyframes=4" in result["overrides"]
    stdout = capsys.readouterr().out
    assert stdout.startswith(bench.HEADER) and "| 40 |" in stdout and "frames tracked" in stdout
