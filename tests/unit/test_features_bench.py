"""`slam bench-features` on a small subset of the shared data, its pair selection and its report file."""

import numpy as np
import pytest

from slam.bench_features import BEGIN, END, load_pairs, write_report
from slam.cli import main


def test_pairs_have_the_asked_gaps_and_ground_truth_rotations(shared_data):
    pairs = load_pairs(shared_data, "kitti-07", [1, 10], per_gap=3)
    assert [j - i for i, j in pairs.pairs] == [1, 1, 1, 10, 10, 10]
    assert set(pairs.frames) == {i for p in pairs.pairs for i in p}
    for R in pairs.R_gt:
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    travelled = np.linalg.norm(pairs.t_gt, axis=1)
    assert travelled[3:].min() > travelled[:3].max()  # ten frames cover more road than one
    assert travelled.max() < 15.0  # a car at city speed, 10 Hz
    assert pairs.size == (1226, 370)


def test_bench_command_writes_a_table_with_measured_accuracy(shared_data, tmp_path, capsys):
    out = tmp_path / "features.md"
    out.write_text(f"# notes kept\n\n{BEGIN}\nold table\n{END}\n\ntrailing text\n")
    code = main(
        [
            "bench-features",
            "--data",
            str(shared_data),
            "--out",
            str(out),
            "--extractors",
            "orb",
            "--matchers",
            "ratio",
            "--estimators",
            "magsac",
            "--gaps",
            "5",
            "--pairs",
            "3",
        ]
    )
    assert code == 0
    text = out.read_text()
    assert text.startswith("# notes kept") and text.rstrip().endswith("trailing text")
    assert "old table" not in text
    row = next(line for line in text.splitlines() if line.startswith("| orb | ratio | magsac |"))
    cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
    maa_tum, maa_kitti, maa_all = (float(c) for c in cells[3:6])
    # ORB + MAGSAC++, 5 frames apart, 3 pairs each: measured 0.633 on teddy and 0.967 on KITTI 07.
    assert maa_tum > 0.4 and maa_kitti > 0.8
    assert maa_all == pytest.approx((maa_tum + maa_kitti) / 2, abs=0.001)  # the mean over both
    assert float(cells[6]) > 50 and float(cells[7]) > 30  # matches, inliers per pair


def test_bench_refuses_unknown_names(tmp_path, capsys):
    code = main(["bench-features", "--data", str(tmp_path), "--extractors", "surf", "--out", str(tmp_path / "x.md")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "slam bench-features: error: unknown extractor 'surf' (known: orb, sift, rootsift, superpoint, xfeat)"


def test_report_written_fresh_when_no_file(tmp_path):
    path = tmp_path / "new.md"
    write_report(path, "| a |", "header")
    text = path.read_text()
    assert BEGIN in text and END in text and "| a |" in text
