"""KITTI reader on small generated sequences: calibration, stereo baseline, poses, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import open_sequence

W, H = 40, 20
FX, CX, CY, BASELINE = 350.5, 20.25, 10.5, 0.54


def _p(tx: float) -> str:
    return " ".join(f"{v:.12e}" for v in [FX, 0, CX, tx, 0, FX, CY, 0, 0, 0, 1, 0])


def make_kitti(root: Path, n: int = 5, stereo: bool = True, poses: bool = True) -> Path:
    seq = root / "sequences" / "03"
    for cam in ("image_0", "image_1") if stereo else ("image_0",):
        (seq / cam).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(seq / cam / f"{i:06d}.png"), np.full((H, W), 10 * i + (cam == "image_1"), np.uint8))
    calib = [f"P0: {_p(0)}", f"P1: {_p(-FX * BASELINE)}", f"P2: {_p(46.0)}", f"P3: {_p(-330.0)}",
             "Tr: " + " ".join(["0.0"] * 12)]
    (seq / "calib.txt").write_text("\n".join(calib) + "\n")
    (seq / "times.txt").write_text("".join(f"{0.1 * i:e}\n" for i in range(n)))
    if poses:
        (root / "poses").mkdir()
        lines = [f"1 0 0 {0.5 * i} 0 1 0 0 0 0 1 {float(i)}\n" for i in range(n)]
        (root / "poses" / "03.txt").write_text("".join(lines))
    return seq


def _config(mode: str):
    return load_config(overrides=["dataset.format=kitti", f"mode={mode}"])


def test_stereo_sequence(tmp_path):
    seq = open_sequence(make_kitti(tmp_path), _config("stereo"))
    assert len(seq) == 5 and seq.name == "03"
    cam = seq.camera
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (FX, FX, CX, CY, W, H)
    assert cam.baseline == pytest.approx(BASELINE, abs=1e-9)
    frame = seq.load(3)
    assert frame.image[0, 0] == 30 and frame.right[0, 0] == 31 and frame.timestamp == pytest.approx(0.3)
    np.testing.assert_allclose(seq.groundtruth.timestamps, 0.1 * np.arange(5))
    np.testing.assert_allclose(seq.groundtruth.positions[4], [2.0, 0.0, 4.0])


def test_mono_needs_only_image_0(tmp_path):
    seq = open_sequence(make_kitti(tmp_path, stereo=False, poses=False), _config("mono"))
    assert len(seq) == 5 and seq.camera.baseline == 0.0 and seq.groundtruth is None
    assert seq.load(0).right is None


def test_rgbd_is_refused(tmp_path):
    with pytest.raises(SlamInputError, match="no depth"):
        open_sequence(make_kitti(tmp_path), _config("rgbd"))


def test_stereo_without_image_1(tmp_path):
    with pytest.raises(SlamInputError, match="image_1"):
        open_sequence(make_kitti(tmp_path, stereo=False), _config("stereo"))


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("P0")), "no P0"),
        (lambda t: t.replace("P0: ", "P0: 1 "), "P0 has 13 values"),
        (lambda t: t.replace("P1: ", "P1: x ").replace(" 0.000000000000e+00\nP2", "\nP2", 1), "not a number"),
        (lambda t: "garbage line\n" + t, "expected 'NAME: values'"),
    ],
)
def test_malformed_calib(tmp_path, edit, problem):
    seq = make_kitti(tmp_path)
    calib = seq / "calib.txt"
    calib.write_text(edit(calib.read_text()))
    with pytest.raises(SlamInputError, match=problem) as info:
        open_sequence(seq, _config("stereo"))
    assert str(calib) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["calib.txt", "times.txt"])
def test_missing_files(tmp_path, name):
    seq = make_kitti(tmp_path)
    (seq / name).unlink()
    with pytest.raises(SlamInputError, match=name):
        open_sequence(seq, _config("mono"))


def test_missing_folder(tmp_path):
    with pytest.raises(SlamInputError, match="not found"):
        open_sequence(tmp_path / "sequences" / "99", _config("mono"))


def test_missing_image_skips_its_frame_at_open(tmp_path):
    seq_dir = make_kitti(tmp_path)
    (seq_dir / "image_1" / "000004.png").unlink()
    seq = open_sequence(seq_dir, _config("stereo"))
    assert [s.path for s in seq.skipped] == [str(seq_dir / "image_1" / "000004.png")]
    assert len(seq) == 4 and seq.load(3).path.endswith("000003.png")
    assert len(open_sequence(seq_dir, _config("mono"))) == 5  # the left image is there


def test_most_images_missing_is_refused(tmp_path):
    seq_dir = make_kitti(tmp_path)
    for i in range(3):
        (seq_dir / "image_0" / f"{i:06d}.png").unlink()
    with pytest.raises(SlamInputError, match="3 of the 5 frames times.txt lists have no image"):
        open_sequence(seq_dir, _config("mono"))


def test_bad_times_and_pose_count(tmp_path):
    seq = make_kitti(tmp_path)
    (seq / "times.txt").write_text("0.0\nsoon\n")
    with pytest.raises(SlamInputError, match="line 2"):
        open_sequence(seq, _config("mono"))
    (seq / "times.txt").write_text("0.0\n0.1\n0.2\n")
    with pytest.raises(SlamInputError, match="5 poses but 3 timestamps"):
        open_sequence(seq, _config("mono"))


def test_corrupt_image_named_at_load(tmp_path):
    seq_dir = make_kitti(tmp_path)
    seq = open_sequence(seq_dir, _config("stereo"))
    bad = seq_dir / "image_1" / "000002.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(SlamInputError, match="000002.png"):
        seq.load(2)
    assert seq.load(1).right is not None


def test_config_intrinsics_ignored_with_a_warning(tmp_path):
    config = load_config(overrides=["dataset.format=kitti", "mode=mono", "camera.fx=1", "camera.fy=1",
                                    "camera.cx=1", "camera.cy=1"])
    seq = open_sequence(make_kitti(tmp_path), config)
    assert seq.camera.fx == FX and any("calib.txt" in w for w in seq.warnings)
