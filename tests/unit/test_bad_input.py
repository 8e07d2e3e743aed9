"""Messy input as a user has it: single bad frames are skipped with one reason naming the file; input the
whole sequence depends on is refused with one line naming the file.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import open_sequence
from slam.io.base import MAX_CONSECUTIVE_BAD_FRAMES
from slam.io.calibration import Calibration, write_calibration
from tests.unit.test_io_euroc import make_euroc
from tests.unit.test_io_kitti import make_kitti
from tests.unit.test_io_tum import INTRINSICS, H, W, make_tum


def tum_config(*extra: str):
    return load_config(overrides=["dataset.format=tum", *INTRINSICS, *extra])


@pytest.fixture
def tum(tmp_path) -> Path:
    stamps = 10.0 + np.arange(8) / 30
    return make_tum(tmp_path / "seq", stamps, stamps + 0.002)


def red(frame) -> int:
    """make_tum writes the frame number into the red channel."""
    return int(frame.image[0, 0, 2])


# ---- timestamps ------------------------------------------------------------------------------------------


def test_repeated_timestamp_skips_the_later_line(tum):
    lines = (tum / "rgb.txt").read_text().splitlines()
    stamp = lines[4].split()[0]  # frame 2 (after two comment lines)
    lines[5] = f"{stamp} {lines[5].split()[1]}"  # frame 3's image listed with frame 2's timestamp
    (tum / "rgb.txt").write_text("\n".join(lines) + "\n")
    seq = open_sequence(tum, tum_config())
    assert [red(f) for f in seq.frames()] == [0, 1, 2, 4, 5, 6, 7]
    assert len(seq.skipped) == 1 and seq.skipped[0].path.endswith(lines[5].split()[1])
    assert seq.skipped[0].reason == "rgb.txt line 6 repeats the timestamp of line 5"


def test_lines_out_of_order_are_sorted_with_one_warning(tum):
    lines = (tum / "rgb.txt").read_text().splitlines()
    lines[3], lines[7] = lines[7], lines[3]
    (tum / "rgb.txt").write_text("\n".join(lines) + "\n")
    seq = open_sequence(tum, tum_config())
    assert [red(f) for f in seq.frames()] == list(range(8))
    assert seq.warnings == [f"{tum / 'rgb.txt'}: lines are not in time order; frames sorted by timestamp"]
    assert seq.skipped == []


def test_kitti_timestamp_not_increasing_skips_that_frame(tmp_path):
    folder = make_kitti(tmp_path)
    (folder / "times.txt").write_text("0.0\n0.1\n0.1\n0.05\n0.4\n")
    seq = open_sequence(folder, load_config(overrides=["dataset.format=kitti", "mode=stereo"]))
    assert [Path(f.path).name for f in seq.frames()] == ["000000.png", "000001.png", "000004.png"]
    assert [Path(s.path).name for s in seq.skipped] == ["000002.png", "000003.png"]
    assert "is not after frame 1's" in seq.skipped[0].reason


def test_euroc_repeated_timestamp_skips_the_later_row(tmp_path):
    root = make_euroc(tmp_path / "V1", n=4)
    csv = root / "mav0" / "cam0" / "data.csv"
    rows = csv.read_text().splitlines()
    rows.append(rows[2].split(",")[0] + "," + rows[3].split(",")[1])
    csv.write_text("\n".join(rows) + "\n")
    seq = open_sequence(root, load_config(overrides=["dataset.format=euroc", "mode=mono"]))
    assert len(seq) == 4 and len(seq.skipped) == 1
    assert seq.skipped[0].reason == "data.csv line 6 repeats a timestamp"


# ---- images and depth maps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream, write",
    [
        ("rgb", lambda p: p.write_bytes(b"")),
        ("rgb", lambda p: p.write_bytes(p.read_bytes()[:40])),
        ("depth", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))),
        ("depth", lambda p: cv2.imwrite(str(p), np.zeros((H // 2, W // 2), np.uint16))),  # another size
        ("depth", lambda p: p.unlink()),  # deleted after the folder was opened
    ],
)
def test_one_unreadable_frame_is_skipped_during_iteration(tum, stream, write):
    seq = open_sequence(tum, tum_config())
    bad = sorted((tum / stream).iterdir())[3]
    write(bad)
    reported = []
    seq.on_skip = reported.append
    assert [red(f) for f in seq.frames()] == [0, 1, 2, 4, 5, 6, 7]
    assert reported == seq.skipped and len(reported) == 1
    assert reported[0].path == str(bad) and reported[0].timestamp == pytest.approx(10.0 + 3 / 30)
    assert "\n" not in reported[0].message() and reported[0].message().endswith("; frame skipped")


def test_a_run_of_unreadable_frames_ends_the_sequence(tmp_path):
    n = MAX_CONSECUTIVE_BAD_FRAMES + 5
    stamps = np.arange(n) / 30
    folder = make_tum(tmp_path / "long", stamps, stamps, gt=False)
    seq = open_sequence(folder, tum_config())
    for image in sorted((folder / "rgb").iterdir())[2:]:
        image.write_bytes(b"not an image")
    frames = []
    with pytest.raises(SlamInputError, match=f"{MAX_CONSECUTIVE_BAD_FRAMES} frames in a row cannot be read"):
        for frame in seq.frames():
            frames.append(frame)
    assert len(frames) == 2 and len(seq.skipped) == MAX_CONSECUTIVE_BAD_FRAMES


def test_depth_maps_of_another_size_refuse_the_sequence(tum):
    for depth in (tum / "depth").iterdir():
        cv2.imwrite(str(depth), np.zeros((H // 2, W // 2), np.uint16))
    with pytest.raises(SlamInputError) as info:
        open_sequence(tum, tum_config())
    message = str(info.value)
    assert (
        str(tum / "depth") in message
        and f"depth maps are {W // 2}x{H // 2} but the colour images are {W}x{H}" in message
    )


def test_first_images_broken_the_size_comes_from_the_next(tum):
    for image in sorted((tum / "rgb").iterdir())[:2]:
        image.write_bytes(b"")
    seq = open_sequence(tum, tum_config())
    assert (seq.camera.width, seq.camera.height) == (W, H)
    assert [red(f) for f in seq.frames()] == [2, 3, 4, 5, 6, 7] and len(seq.skipped) == 2


def test_stopping_early_leaves_no_reader_thread(tum):
    before = set(threading.enumerate())
    frames = open_sequence(tum, tum_config("dataset.prefetch=2")).frames()
    next(frames)
    frames.close()
    assert [t for t in threading.enumerate() if t not in before] == []


# ---- calibration -----------------------------------------------------------------------------------------


def test_principal_point_outside_the_image_is_refused(tum):
    write_calibration(tum / "calibration.yaml", Calibration(30.0, 30.0, 2 * W + 0.5, H / 2, W, H))
    with pytest.raises(SlamInputError, match=r"calibration contradicts the image size: principal point \(64.5, 12\)"):
        open_sequence(tum, load_config(overrides=["dataset.format=tum"]))


def test_kitti_calib_for_another_image_size_is_refused(tmp_path):
    folder = make_kitti(tmp_path)
    calib = folder / "calib.txt"
    calib.write_text(calib.read_text().replace("2.025000000000e+01", "6.000000000000e+02"))  # cx of a wider camera
    with pytest.raises(SlamInputError) as info:
        open_sequence(folder, load_config(overrides=["dataset.format=kitti", "mode=mono"]))
    assert str(calib) in str(info.value) and "principal point (600, 10.5) lies outside the 40x20 image" in str(
        info.value
    )


def test_euroc_images_of_another_size_than_sensor_yaml_are_refused(tmp_path):
    root = make_euroc(tmp_path / "V1", n=2)
    for image in (root / "mav0" / "cam0" / "data").iterdir():
        cv2.imwrite(str(image), np.zeros((100, 200), np.uint8))
    with pytest.raises(SlamInputError, match="the images are 200x100 but sensor.yaml gives the resolution 376x240"):
        open_sequence(root, load_config(overrides=["dataset.format=euroc", "mode=mono"]))


# ---- ground truth ----------------------------------------------------------------------------------------


def test_nan_poses_in_groundtruth_are_dropped_with_one_warning(tum):
    gt = tum / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    total = len(lines) - 1
    lines[3] = lines[3].replace(" 0 0 0 0 1", " nan 0 0 0 1")
    lines[5] = " ".join(lines[5].split()[:7] + ["inf"])
    gt.write_text("\n".join(lines) + "\n")
    seq = open_sequence(tum, tum_config())
    assert len(seq.groundtruth) == total - 2 and np.isfinite(seq.groundtruth.poses).all()
    assert seq.warnings == [
        f"{gt}: 2 of {total} poses dropped (a NaN, infinite value, zero quaternion or repeated timestamp; lines 4, 6)"
    ]


def test_groundtruth_with_only_nan_poses_is_refused(tum):
    (tum / "groundtruth.txt").write_text("1.0 nan 0 0 0 0 0 1\n")
    with pytest.raises(SlamInputError, match="groundtruth.txt: no usable poses"):
        open_sequence(tum, tum_config())


def test_kitti_nan_pose_is_dropped_with_a_warning(tmp_path):
    folder = make_kitti(tmp_path)
    poses = tmp_path / "poses" / "03.txt"
    lines = poses.read_text().splitlines()
    lines[2] = lines[2].replace("1 0 0", "nan 0 0", 1)
    poses.write_text("\n".join(lines) + "\n")
    seq = open_sequence(folder, load_config(overrides=["dataset.format=kitti", "mode=mono"]))
    assert len(seq.groundtruth) == 4 and seq.groundtruth.timestamps.tolist() == pytest.approx([0, 0.1, 0.3, 0.4])
    assert len(seq.warnings) == 1 and str(poses) in seq.warnings[0] and "line 3" in seq.warnings[0]


def test_euroc_nan_state_row_is_dropped_with_a_warning(tmp_path):
    root = make_euroc(tmp_path / "V1", n=3)
    state = root / "mav0" / "state_groundtruth_estimate0" / "data.csv"
    rows = state.read_text().splitlines()
    fields = rows[2].split(",")
    rows[2] = ",".join(fields[:2] + ["nan"] + fields[3:])
    state.write_text("\n".join(rows) + "\n")
    seq = open_sequence(root, load_config(overrides=["dataset.format=euroc", "mode=mono"]))
    assert len(seq.groundtruth) == 2
    assert len(seq.warnings) == 1 and str(state) in seq.warnings[0] and "first at line 3" in seq.warnings[0]


# ---- through `slam run` ----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_run_warns_once_per_skipped_frame_and_counts_them(tmp_path, capsys):
    from slam.cli import main
    from slam.synthetic import render_sequence

    folder = render_sequence(tmp_path / "seq", frames=8, seed=0, width=320, height=240)
    missing = folder / "rgb" / "0.133333.png"
    missing.unlink()
    listing = folder / "depth.txt"
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join(lines + [lines[-1]]) + "\n")  # the last depth image listed twice
    config = Path(__file__).resolve().parents[2] / "configs" / "synthetic_rgbd.yaml"
    code = main(["run", str(config), "--data", str(folder), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 0
    assert err == [
        f"slam: warning: {missing}: listed in rgb.txt line 8 but does not exist; frame skipped",
        f"slam: warning: {folder / lines[-1].split()[1]}: depth.txt line {len(lines) + 1} repeats the timestamp "
        f"of line {len(lines)}; frame skipped",
    ]
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["frames"] == 7 and summary["skipped_frames"] == 2
    assert [s["path"] for s in summary["skipped"]] == [str(missing), str(folder / lines[-1].split()[1])]
