"""The `slam` command: one-line errors with exit status 2 for bad input, and the eval / gt / synth commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slam.cli import main
from slam.synthetic import is_complete, render_sequence
from slam.trajectory import Trajectory, read_tum, write_tum

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = str(REPO / "configs" / "synthetic_rgbd.yaml")


@pytest.fixture(scope="module")
def tiny_tum(tmp_path_factory) -> Path:
    """A 6-frame 320x240 synthetic RGB-D sequence in TUM layout."""
    return render_sequence(tmp_path_factory.mktemp("cli") / "seq", frames=6, seed=0, width=320, height=240)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def one_line_error(err: str, command: str, *parts: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"slam {command}: error: "), err
    for part in parts:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    return lines[0]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slam", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


# ---- bad input: exit status 2 and one line on stderr ------------------------------------------------------

def test_missing_data_folder(tmp_path):
    missing = tmp_path / "no_such_sequence"
    proc = run_subprocess("run", SYNTHETIC, "--data", str(missing), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    one_line_error(proc.stderr, "run", str(missing), "not found")
    assert "Traceback" not in proc.stderr


def test_missing_rgb_listing(tmp_path, capsys):
    folder = tmp_path / "seq"
    folder.mkdir()
    code, _, err = run_cli(capsys, "run", SYNTHETIC, "--data", str(folder), "--out", str(tmp_path / "out"))
    assert code == 2
    one_line_error(err, "run", str(folder / "rgb.txt"), "image list not found")


def garbage(data: bytes) -> bytes:
    return bytes(range(7, 256, 3)) * 8


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def broken_header(data: bytes) -> bytes:
    return data[:8] + bytes(range(256)) * 4  # the PNG signature, then no IHDR chunk


def empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize("stream, name, corrupt, problem", [
    ("rgb", "0.000000.png", garbage, "not a PNG file"),  # probed when the folder is opened, skipped in the run
    ("rgb", "0.100000.png", garbage, "not a PNG file"),  # found when its frame is read, mid-run
    ("depth", "0.133333.png", garbage, "not a PNG file"),
    ("rgb", "0.100000.png", truncated, "truncated"),
    ("rgb", "0.000000.png", broken_header, "first chunk is not IHDR"),
    ("depth", "0.100000.png", empty, "empty file"),
])
def test_corrupt_png_in_a_tum_folder_skips_that_frame(tiny_tum, tmp_path, stream, name, corrupt, problem):
    folder = copy_of(tiny_tum, tmp_path)
    bad = folder / stream / name
    bad.write_bytes(corrupt(bad.read_bytes()))
    proc = run_subprocess("run", SYNTHETIC, "--data", str(folder), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "libpng" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"slam: warning: {bad}: cannot decode image: ")  # one, naming it
    assert problem in lines[0] and lines[0].endswith("; frame skipped")
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["frames"] == 5 and summary["skipped_frames"] == 1
    assert summary["skipped"][0]["path"] == str(bad) and problem in summary["skipped"][0]["reason"]


def test_every_image_corrupt_refuses_the_sequence(tiny_tum, tmp_path):
    folder = copy_of(tiny_tum, tmp_path)
    for image in (folder / "rgb").iterdir():
        image.write_bytes(b"")
    proc = run_subprocess("run", SYNTHETIC, "--data", str(folder), "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2
    first = folder / "rgb" / "0.000000.png"
    one_line_error(proc.stderr, "run", str(first), "none of the first 6 images can be read (cannot decode image")


@pytest.fixture
def kitti_copy(kitti_root, tmp_path) -> Path:
    """KITTI 06 with its own calib.txt / times.txt and the shared images linked in (never written)."""
    source = kitti_root / "sequences" / "06"
    folder = tmp_path / "sequences" / "06"
    folder.mkdir(parents=True)
    for name in ("image_0", "image_1"):
        (folder / name).symlink_to(source / name, target_is_directory=True)
    for name in ("calib.txt", "times.txt"):
        shutil.copyfile(source / name, folder / name)
    return folder


@pytest.mark.parametrize("edit, problem", [
    (lambda text: text.replace("P1: ", "P1: x ", 1), "P1 has 13 values"),
    (lambda text: re.sub(r"^P0: \S+", "P0: nan", text, count=1, flags=re.M), "line 1: P0 has a NaN"),
    (lambda text: "no colon here\n" + text, "line 1: expected 'NAME: values'"),
])
def test_malformed_kitti_calib(kitti_copy, tmp_path, capsys, edit, problem):
    calib = kitti_copy / "calib.txt"
    calib.write_text(edit(calib.read_text()))
    code, _, err = run_cli(capsys, "run", str(REPO / "configs" / "kitti_04-12_stereo.yaml"), "--data",
                           str(kitti_copy), "--out", str(tmp_path / "out"))
    assert code == 2
    one_line_error(err, "run", str(calib), problem)


@pytest.fixture
def euroc_copy(euroc_v101, tmp_path) -> Path:
    """EuRoC V1_01 with its own data.csv / sensor.yaml files and the shared images linked in."""
    root = tmp_path / "V1_01_easy"
    for cam in ("cam0", "cam1"):
        source, target = euroc_v101 / "mav0" / cam, root / "mav0" / cam
        target.mkdir(parents=True)
        (target / "data").symlink_to(source / "data", target_is_directory=True)
        for name in ("data.csv", "sensor.yaml"):
            shutil.copyfile(source / name, target / name)
    return root


@pytest.mark.parametrize("old, new, problem", [
    ("intrinsics: [", "intrinsics: [1.0, ", "key 'intrinsics' must be a list of 4 numbers"),
    ("resolution: [", "resolution: [[", "invalid YAML at line"),
    ("T_BS:", "T_XX:", "missing key 'T_BS'"),
])
def test_malformed_euroc_sensor_yaml(euroc_copy, tmp_path, capsys, old, new, problem):
    sensor = euroc_copy / "mav0" / "cam1" / "sensor.yaml"
    text = sensor.read_text()
    assert old in text
    sensor.write_text(text.replace(old, new, 1))
    code, _, err = run_cli(capsys, "run", str(REPO / "configs" / "euroc_stereo.yaml"), "--data", str(euroc_copy),
                           "--out", str(tmp_path / "out"))
    assert code == 2
    one_line_error(err, "run", str(sensor), problem)


def test_config_with_an_unknown_key(tiny_tum, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("mode: rgbd\ntracking:\n  min_tracked_pionts: 30\n")
    code, _, err = run_cli(capsys, "run", str(config), "--data", str(tiny_tum), "--out", str(tmp_path / "out"))
    assert code == 2
    one_line_error(err, "run", str(config), "unknown config key 'tracking.min_tracked_pionts'")


@pytest.mark.parametrize("override, problem", [
    ("tracking.min_tracked_points=many", "'tracking.min_tracked_points' expects int, got 'many'"),
    ("mapping.enabled=3", "'mapping.enabled' expects bool, got 3"),
    ("features.scale_factor=[1, 2]", "'features.scale_factor' expects float"),
    ("tracking.no_such_key=1", "unknown config key 'tracking.no_such_key'"),
    ("loop_closing.max_scale_change=0.8", "'loop_closing.max_scale_change' must be above 1.0, got 0.8"),
    ("features.min_fast_threshold=-1", "'features.min_fast_threshold' must be within 0..255, got -1"),
    ("features.n_features=50", "'features.n_features' (50) must be at least twice 'tracking.min_tracked_points' (30)"),
    ("tracking.keyframe_min_frames=40", "'tracking.keyframe_min_frames' (40) must not exceed "
                                        "'tracking.keyframe_max_frames' (30)"),
])
def test_set_with_a_wrong_type_or_key(tiny_tum, tmp_path, capsys, override, problem):
    code, _, err = run_cli(capsys, "run", SYNTHETIC, "--data", str(tiny_tum), "--out", str(tmp_path / "out"),
                           "--set", override)
    assert code == 2
    one_line_error(err, "run", "--set", problem)


def test_missing_config_file(tiny_tum, tmp_path, capsys):
    config = tmp_path / "absent.yaml"
    code, _, err = run_cli(capsys, "run", str(config), "--data", str(tiny_tum), "--out", str(tmp_path / "out"))
    assert code == 2
    one_line_error(err, "run", str(config), "config file not found")


# ---- the commands that work -------------------------------------------------------------------------------

def test_run_on_a_tiny_sequence_reports_and_writes_outputs(tiny_tum, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "run", SYNTHETIC, "--data", str(tiny_tum), "--out", str(out), "--quiet")
    assert code == 0
    assert re.search(r"^frames=6 tracked=6 ", stdout, re.M)
    ate = float(re.search(r"^ATE_RMSE_m=(\S+)", stdout, re.M).group(1))
    assert ate == pytest.approx(json.loads((out / "run.json").read_text())["ate_rmse_m"], abs=1e-6)
    assert len(read_tum(out / "trajectory.tum")) == 6


def alternating_offset(trajectory: Trajectory, metres: float) -> Trajectory:
    """Every pose moved up or down by `metres`, alternately: an ATE of about `metres` that no alignment removes."""
    poses = trajectory.poses.copy()
    sign = np.where(np.arange(len(poses)) % 2 == 0, 1.0, -1.0)
    poses[:, 2, 3] += metres * sign
    return Trajectory(trajectory.timestamps.copy(), poses)


def test_eval_prints_ate_and_writes_eval_json(synthetic_rgbd_seq, tmp_path, capsys):
    gt_path = synthetic_rgbd_seq / "groundtruth.txt"
    est_path = tmp_path / "est.tum"
    write_tum(est_path, alternating_offset(read_tum(gt_path), 0.05))
    out = tmp_path / "eval"
    code, stdout, _ = run_cli(capsys, "eval", "--gt", str(gt_path), "--est", str(est_path), "--out", str(out))
    assert code == 0
    first = stdout.splitlines()[0]
    match = re.fullmatch(r"ATE_RMSE_m=(\d+\.\d+)", first)
    assert match, first
    assert float(match.group(1)) == pytest.approx(0.05, rel=0.01)
    report = json.loads((out / "eval.json").read_text())
    assert report["ate_rmse_m"] == pytest.approx(float(match.group(1)), abs=1e-6)
    assert report["matched"] == 40 and report["align"] == "se3"


def test_eval_of_a_missing_estimate_is_a_one_line_error(synthetic_rgbd_seq, tmp_path, capsys):
    est = tmp_path / "none.tum"
    code, _, err = run_cli(capsys, "eval", "--gt", str(synthetic_rgbd_seq / "groundtruth.txt"), "--est", str(est))
    assert code == 2
    one_line_error(err, "eval", str(est), "not found")


def test_gt_of_kitti_06_writes_51_poses(kitti_root, tmp_path, capsys):
    out = tmp_path / "gt06.tum"
    code, stdout, _ = run_cli(capsys, "gt", str(kitti_root / "sequences" / "06"), "--out", str(out))
    assert code == 0 and "51 poses" in stdout
    trajectory = read_tum(out)
    assert len(trajectory) == 51
    np.testing.assert_allclose(trajectory.poses[0], np.eye(4), atol=1e-6)  # KITTI starts at the origin
    travelled = np.linalg.norm(np.diff(trajectory.poses[:, :3, 3], axis=0), axis=1).sum()
    assert 40.0 < travelled < 80.0  # ~60 m of driving


def test_synth_writes_a_tum_folder(tmp_path, capsys):
    out = tmp_path / "synth"
    code, stdout, _ = run_cli(capsys, "synth", str(out), "--frames", "2", "--seed", "3", "--trajectory", "line")
    assert code == 0 and str(out) in stdout
    assert is_complete(out)
    for name in ("rgb.txt", "depth.txt", "groundtruth.txt", "calibration.yaml"):
        assert (out / name).is_file()
    assert len(list((out / "rgb").glob("*.png"))) == 2 and len(list((out / "depth").glob("*.png"))) == 2
    assert len(read_tum(out / "groundtruth.txt")) == 2


def test_synth_with_a_bad_trajectory_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "synth", str(tmp_path / "synth"), "--trajectory", "spiral")
    assert code == 2
    one_line_error(err, "synth", "unknown trajectory 'spiral'")


def test_no_command_prints_help_and_exits_2(capsys):
    code, stdout, _ = run_cli(capsys)
    assert code == 2 and "usage: slam" in stdout
