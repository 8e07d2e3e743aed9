"""load_groundtruth's auto-detection, and open_sequence's dispatch and mode checks."""

from __future__ import annotations

import numpy as np
import pytest

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import load_groundtruth, open_sequence

TUM_LINES = "# t tx ty tz qx qy qz qw\n1.0 1 2 3 0 0 0 1\n2.0 4 5 6 0 0 0 1\n"
KITTI_LINES = "1 0 0 1.5 0 1 0 0 0 0 1 2\n1 0 0 2.5 0 1 0 0 0 0 1 3\n"


def test_tum_folder_and_file(tmp_path):
    (tmp_path / "groundtruth.txt").write_text(TUM_LINES)
    for source in (tmp_path, tmp_path / "groundtruth.txt"):
        gt = load_groundtruth(source)
        np.testing.assert_allclose(gt.timestamps, [1.0, 2.0])
        np.testing.assert_allclose(gt.positions[1], [4, 5, 6])


def test_kitti_sequence_folder_and_poses_file_use_times(tmp_path):
    seq = tmp_path / "sequences" / "05"
    seq.mkdir(parents=True)
    (seq / "times.txt").write_text("0.0\n0.25\n")
    (tmp_path / "poses").mkdir()
    (tmp_path / "poses" / "05.txt").write_text(KITTI_LINES)
    for source in (seq, tmp_path / "poses" / "05.txt"):
        gt = load_groundtruth(source)
        np.testing.assert_allclose(gt.timestamps, [0.0, 0.25])
        np.testing.assert_allclose(gt.positions[1], [2.5, 0, 3])


def test_kitti_poses_file_alone_counts_frames(tmp_path):
    (tmp_path / "07.txt").write_text(KITTI_LINES)
    np.testing.assert_allclose(load_groundtruth(tmp_path / "07.txt").timestamps, [0.0, 1.0])


def test_kitti_sequence_without_poses(tmp_path):
    (tmp_path / "times.txt").write_text("0.0\n")
    with pytest.raises(SlamInputError, match="without ground truth"):
        load_groundtruth(tmp_path)


def test_nothing_found_or_not_a_trajectory(tmp_path):
    with pytest.raises(SlamInputError, match="no ground truth found"):
        load_groundtruth(tmp_path)
    with pytest.raises(SlamInputError, match="no such file"):
        load_groundtruth(tmp_path / "missing")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n")
    with pytest.raises(SlamInputError, match="3 values per line") as info:
        load_groundtruth(bad)
    assert str(bad) in str(info.value)
    bad.write_text("# only a comment\n")
    with pytest.raises(SlamInputError, match="empty"):
        load_groundtruth(bad)


def test_open_sequence_dispatches_on_format(tmp_path):
    # The same empty folder fails differently per reader: each names what it looked for.
    expectations = {"tum": "rgb.txt", "kitti": "calib.txt", "euroc": "mav0", "images": "no images"}
    for fmt, expected in expectations.items():
        with pytest.raises(SlamInputError, match=expected):
            open_sequence(tmp_path, load_config(overrides=[f"dataset.format={fmt}", "mode=mono"]))
    with pytest.raises(SlamInputError, match="video file not found"):
        open_sequence(tmp_path / "clip.mp4", load_config(overrides=["dataset.format=video", "mode=mono"]))
