"""The ORB-SLAM3 peer: its settings files, 'skipped' without its venv, and real runs with the pyorbslam3 wheel
installed into a temporary venv (skipped only where pip cannot reach PyPI or the wheel does not fit here):
the trajectory it gives is scored by our own evaluation, like ours.

The real runs are in the integration tier: installing ORB-SLAM3 and running it on the shared chunks took 18 s
(7.6 s of it the install) of the fast tier's time on the 2-core machine."""

from __future__ import annotations

import math
import platform
import sys
from pathlib import Path

import pytest

from slam.bench.command import run_bench
from slam.bench.jobs import Job, run_job
from slam.bench.peers.orbslam3 import settings_text
from slam.camera import Camera
from slam.config import load_config
from slam.errors import SlamInputError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
_NETWORK_WORDS = ("connection", "network", "resolve", "temporary failure", "timed out", "could not find a version")


def settings(config_name: str, camera: Camera, sequence: str = "seq") -> dict[str, str]:
    text = settings_text(load_config(CONFIGS / config_name), camera, sequence)
    assert text.startswith("%YAML:1.0\n")
    return dict(line.split(": ", 1) for line in text.splitlines()[1:] if not line.startswith("#"))


def test_settings_are_legacy_format_with_orbslam3_dataset_values():
    tum = Camera(535.4, 539.2, 320.1, 247.6, 640, 480, 0.16)
    rgbd = settings("tum_fr3_rgbd.yaml", tum)
    assert "File.version" not in rgbd and rgbd["Camera.type"] == '"PinHole"'  # v1.0 crashes on "Rectified"
    assert rgbd["Camera.fx"] == "535.4" and rgbd["Camera.k1"] == "0.0"
    assert float(rgbd["Camera.bf"]) == pytest.approx(535.4 * 0.0747)  # ORB-SLAM3's TUM baseline, not our virtual one
    assert rgbd["ThDepth"] == "40.0" and rgbd["DepthMapFactor"] == "1.0"  # depth goes over in metres
    assert (rgbd["ORBextractor.nFeatures"], rgbd["ORBextractor.iniThFAST"]) == ("1000", "20")
    assert "Viewer.KeyFrameSize" in rgbd
    kitti = Camera(707.0912, 707.0912, 601.8873, 183.1104, 1226, 370, 0.537)
    stereo = settings("kitti_04-12_stereo.yaml", kitti, "06")
    assert float(stereo["Camera.bf"]) == pytest.approx(707.0912 * 0.537)
    orb = (stereo["ORBextractor.nFeatures"], stereo["ORBextractor.iniThFAST"], stereo["ThDepth"])
    assert orb == ("2000", "12", "40.0")  # Stereo/KITTI04-12.yaml
    assert (settings("kitti_04-12_stereo.yaml", kitti, "00")["ThDepth"]) == "35.0"  # KITTI00-02.yaml
    mono = settings("kitti_04-12_mono.yaml", Camera(707.0912, 707.0912, 601.8873, 183.1104, 1226, 370))
    assert "Camera.bf" not in mono and "ThDepth" not in mono and mono["ORBextractor.iniThFAST"] == "20"


def small_suite(tmp_path: Path, frames: int) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(f"""
runs: 1
timeout_s: 300
sequences:
  - {{name: teddy, data: tum/rgbd_dataset_freiburg3_teddy, config: {CONFIGS / "tum_fr3_rgbd.yaml"}, mode: rgbd,
      max_frames: {frames}}}
methods:
  - {{name: orbslam3, peer: orbslam3, overrides: [dataset.realtime=false]}}
""")
    return path


def test_without_its_venv_the_peer_is_reported_skipped(tmp_path, monkeypatch, shared_data):
    monkeypatch.delenv("SLAM_ORBSLAM3_PYTHON", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # no default venv there
    outcome = run_bench(small_suite(tmp_path, 3), shared_data, tmp_path / "out", progress=False)
    (cell,) = outcome.cells
    assert cell.status == "skipped" and outcome.failed_runs == 0
    assert "ORB-SLAM3 peer not installed" in cell.reason and "slam install-orbslam3" in cell.reason
    (row,) = [line for line in outcome.section.splitlines() if line.startswith("| teddy |")]
    assert "skipped" in row and "ORB-SLAM3 peer not installed" in row


def test_a_named_python_that_does_not_exist_is_skipped_too(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("SLAM_ORBSLAM3_PYTHON", str(tmp_path / "nowhere" / "python"))
    outcome = run_bench(small_suite(tmp_path, 3), shared_data, tmp_path / "out", progress=False)
    assert outcome.cells[0].status == "skipped" and "does not exist" in outcome.cells[0].reason


@pytest.fixture(scope="module")
def orbslam3_python(tmp_path_factory) -> Path:
    """pyorbslam3 installed into a fresh venv with `slam install-orbslam3`'s code (about 10 s with PyPI)."""
    if sys.version_info[:2] != (3, 11) or sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip("the pyorbslam3 0.1.1 wheel is for CPython 3.11 on x86-64 Linux only")
    from slam.bench.peers.orbslam3 import install

    root = tmp_path_factory.mktemp("orbslam3")
    try:
        return install(root / "venv")
    except SlamInputError as exc:
        if any(word in str(exc).lower() for word in _NETWORK_WORDS):
            pytest.skip(f"pip cannot reach PyPI for pyorbslam3: {exc}")
        raise


def peer_job(tmp_path: Path, name: str, data: Path, config: str, mode: str, frames: int) -> Job:
    return Job(name, "orbslam3", 1, mode, str(data), config, (CONFIGS / config).read_text(), str(tmp_path / name),
               300.0, "orbslam3", ("dataset.realtime=false",), frames)  # fmt: skip


def scored_like_ours(record, data: Path, config: str) -> None:
    """run.json's ATE is our evaluation of the trajectory the run wrote, with our alignment."""
    from slam.evaluation import evaluate
    from slam.io import open_sequence
    from slam.trajectory import read_tum

    sequence = open_sequence(data, load_config(CONFIGS / config))
    trajectory = read_tum(Path(record.run_dir) / "trajectory.tum")
    assert len(trajectory) == record.metrics["poses"]
    result = evaluate(sequence.groundtruth, trajectory, align=record.metrics["ate_align"])
    assert record.metrics["ate_rmse_m"] == pytest.approx(result.ate_rmse_m, rel=1e-9)
    assert record.metrics["ate_matched"] == result.matched


@pytest.mark.integration
def test_orbslam3_tracks_teddy_rgbd_and_is_scored_like_ours(orbslam3_python, tmp_path, monkeypatch, tum_teddy):
    monkeypatch.setenv("SLAM_ORBSLAM3_PYTHON", str(orbslam3_python))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # our DBoW2 vocabulary is written there
    record = run_job(peer_job(tmp_path, "teddy", tum_teddy, "tum_fr3_rgbd.yaml", "rgbd", 30))
    assert record.status == "ok", record.error
    m = record.metrics
    assert m["frames"] == 30 and m["tracked_frames"] >= 28 and m["poses"] >= 28
    assert m["ate_align"] == "se3" and math.isfinite(m["ate_rmse_m"]) and m["ate_rmse_m"] < 0.05
    assert m["peak_rss_mb"] > 20 and len(record.timings_ms) == 30 and min(record.timings_ms) > 0
    assert 2 <= m["keyframes"] <= 30  # the map's keyframes at the end, as our run.json counts them
    assert "6-level DBoW2 tree" in m["note"] and m["orbslam3_vocabulary"].endswith("-L6.txt")
    scored_like_ours(record, tum_teddy, "tum_fr3_rgbd.yaml")


@pytest.mark.integration
def test_orbslam3_tracks_kitti_06_stereo(orbslam3_python, tmp_path, monkeypatch, kitti_root):
    monkeypatch.setenv("SLAM_ORBSLAM3_PYTHON", str(orbslam3_python))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = kitti_root / "sequences" / "06"
    record = run_job(peer_job(tmp_path, "kitti06", data, "kitti_04-12_stereo.yaml", "stereo", 12))
    assert record.status == "ok", record.error
    m = record.metrics
    assert m["frames"] == 12 and m["tracked_frames"] >= 10 and m["poses"] >= 10
    assert math.isfinite(m["ate_rmse_m"]) and m["ate_rmse_m"] < 0.5  # metres over ~12 m of road
    scored_like_ours(record, data, "kitti_04-12_stereo.yaml")


@pytest.mark.integration
def test_orbslam3_keeps_tracking_teddy_monocular(orbslam3_python, tmp_path, monkeypatch, tum_teddy):
    """Monocular ORB-SLAM3 tracks on after initialising: with our vocabulary written only 4 levels deep it
    lost the map a few frames later (all features in one BoW group; 30 of 200 teddy frames tracked)."""
    monkeypatch.setenv("SLAM_ORBSLAM3_PYTHON", str(orbslam3_python))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    record = run_job(peer_job(tmp_path, "teddy_mono", tum_teddy, "tum_fr3_mono.yaml", "mono", 60))
    assert record.status == "ok", record.error
    m = record.metrics
    assert m["frames"] == 60 and m["initialized_frame"] <= 10
    assert m["tracked_frames"] >= 60 - m["initialized_frame"] - 3 and m["poses"] >= m["tracked_frames"] - 3
    assert m["ate_align"] == "sim3" and m["ate_rmse_m"] < 0.03
    scored_like_ours(record, tum_teddy, "tum_fr3_mono.yaml")


@pytest.mark.integration
def test_orbslam3_tracks_a_colour_left_grey_right_stereo_pair(orbslam3_python, tmp_path, monkeypatch,
                                                              synthetic_stereo_seq):
    """The synthetic stereo renders a colour left and a grey right image; ORB-SLAM3 converts both or neither, so
    the peer hands it both grey (it failed on every frame before)."""
    monkeypatch.setenv("SLAM_ORBSLAM3_PYTHON", str(orbslam3_python))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    record = run_job(peer_job(tmp_path, "syn_stereo", synthetic_stereo_seq, "synthetic_stereo.yaml", "stereo", 20))
    assert record.status == "ok", record.error
    m = record.metrics
    assert m["frames"] == 20 and m["tracked_frames"] >= 18
    assert math.isfinite(m["ate_rmse_m"]) and m["ate_rmse_m"] < 0.05
