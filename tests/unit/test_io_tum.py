"""TUM reader on small generated folders: association, depth scaling, intrinsics, stereo, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import open_sequence
from slam.io.calibration import Calibration, write_calibration
from slam.io.tum import associate

W, H = 32, 24
INTRINSICS = ["camera.fx=40.0", "camera.fy=41.0", "camera.cx=16.0", "camera.cy=12.0"]


def _write_list(path: Path, stamps, folder: str) -> list[str]:
    names = [f"{folder}/{t:.6f}.png" for t in stamps]
    path.write_text("# list\n# timestamp filename\n" + "".join(f"{t:.6f} {n}\n" for t, n in zip(stamps, names,
                                                                                                   strict=True)))
    return names


def make_tum(root: Path, rgb_stamps, depth_stamps, right: bool = False, gt: bool = True) -> Path:
    """A TUM folder: colour images whose red channel encodes the frame number; depth = 1 m + 1 cm per frame."""
    for sub in ("rgb", "depth", "right"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(_write_list(root / "rgb.txt", rgb_stamps, "rgb")):
        image = np.zeros((H, W, 3), np.uint8)
        image[..., 2] = i
        cv2.imwrite(str(root / name), image)
    for i, name in enumerate(_write_list(root / "depth.txt", depth_stamps, "depth")):
        depth = np.full((H, W), 5000 + 50 * i, np.uint16)
        depth[0, 0] = 0
        cv2.imwrite(str(root / name), depth)
    if right:
        for i, name in enumerate(_write_list(root / "right.txt", rgb_stamps, "right")):
            cv2.imwrite(str(root / name), np.full((H, W), 100 + i, np.uint8))
    if gt:
        lines = [f"{t:.4f} {t:.3f} 0 0 0 0 0 1\n" for t in np.arange(rgb_stamps[0], rgb_stamps[-1], 0.01)]
        (root / "groundtruth.txt").write_text("# gt\n" + "".join(lines))
    return root


def _config(*extra: str):
    return load_config(overrides=["dataset.format=tum", *INTRINSICS, *extra])


@pytest.fixture
def tum(tmp_path):
    rgb = 100.0 + np.arange(10) / 30
    depth = rgb + 0.004
    depth[3] += 0.05  # too far from every rgb frame: rgb 3 loses its partner
    depth = np.delete(depth, 6)  # rgb 6 has no depth at all
    return make_tum(tmp_path / "seq", rgb, depth)


def test_rgbd_association_drops_frames_without_depth(tum):
    seq = open_sequence(tum, _config())
    assert len(seq) == 8
    kept = [int(seq.load(i).image[0, 0, 2]) for i in range(len(seq))]
    assert kept == [0, 1, 2, 4, 5, 7, 8, 9]
    # The fixture's depth.txt lists frame 3's late depth image out of order: sorted, with a note.
    assert seq.warnings == [f"{tum / 'depth.txt'}: lines are not in time order; frames sorted by timestamp",
                            "2 rgb frames without a depth image within 0.02 s were dropped"]
    frame = seq.load(3)  # rgb 4 pairs with the fifth depth image (written with 5000 + 50 * 4)
    assert frame.depth.dtype == np.float32 and frame.depth[0, 0] == 0.0
    assert frame.depth[5, 5] == pytest.approx((5000 + 50 * 4) / 5000)
    assert frame.timestamp == pytest.approx(100.0 + 4 / 30)


def test_mono_keeps_every_frame_and_camera(tum):
    seq = open_sequence(tum, _config("mode=mono"))
    assert len(seq) == 10 and seq.load(0).depth is None and seq.load(0).right is None
    assert seq.camera.baseline == 0.0 and (seq.camera.width, seq.camera.height) == (W, H)
    assert (seq.camera.fx, seq.camera.fy, seq.camera.cx, seq.camera.cy) == (40.0, 41.0, 16.0, 12.0)
    assert seq.load(0).image.shape == (H, W, 3)
    assert len(seq.groundtruth) > 0


def test_rgbd_baseline_default_and_config(tum):
    assert open_sequence(tum, _config()).camera.baseline == pytest.approx(0.08)
    assert open_sequence(tum, _config("camera.baseline=0.1")).camera.baseline == pytest.approx(0.1)


def test_depth_scale_from_config(tum):
    frame = open_sequence(tum, _config("camera.depth_scale=1000")).load(0)
    assert frame.depth[5, 5] == pytest.approx(5.0)


def test_association_is_one_to_one_and_ordered():
    a = np.array([0.0, 0.012, 0.033, 0.066, 0.100])
    b = np.array([0.005, 0.034, 0.070, 0.5])
    ia, ib = associate(a, b, 0.02)
    # b[0] is within 20 ms of a[0] and a[1]: only the closer a[0] gets it; a[4] is 30 ms from b[2].
    assert len(set(ib.tolist())) == len(ib) and len(set(ia.tolist())) == len(ia)
    assert np.all(np.diff(ia) > 0) and np.all(np.diff(ib) > 0)
    assert np.all(np.abs(a[ia] - b[ib]) <= 0.02)
    assert ia.tolist() == [0, 2, 3] and ib.tolist() == [0, 1, 2]


def test_calibration_yaml_used_when_config_has_no_intrinsics(tum):
    write_calibration(tum / "calibration.yaml", Calibration(30.0, 31.0, 15.5, 11.5, W, H, (), 0.2, 1000.0))
    seq = open_sequence(tum, load_config(overrides=["dataset.format=tum"]))
    assert (seq.camera.fx, seq.camera.cy) == (30.0, 11.5)
    assert seq.camera.baseline == pytest.approx(0.2)  # calibration.yaml's, as the virtual RGB-D baseline
    assert seq.load(0).depth[5, 5] == pytest.approx(5.0)  # calibration.yaml's depth_scale 1000


def test_no_intrinsics_anywhere(tum):
    with pytest.raises(SlamInputError, match="no camera intrinsics"):
        open_sequence(tum, load_config(overrides=["dataset.format=tum"]))


def test_calibration_size_must_match_images(tum):
    write_calibration(tum / "calibration.yaml", Calibration(30.0, 31.0, 15.5, 11.5, 64, 48))
    with pytest.raises(SlamInputError, match="expected 64x48"):
        open_sequence(tum, load_config(overrides=["dataset.format=tum"]))


def test_stereo_folder(tmp_path):
    stamps = 5.0 + np.arange(4) / 20
    root = make_tum(tmp_path / "st", stamps, stamps, right=True)
    write_calibration(root / "calibration.yaml", Calibration(30.0, 30.0, 16.0, 12.0, W, H, (), 0.12))
    seq = open_sequence(root, load_config(overrides=["dataset.format=tum", "mode=stereo"]))
    assert len(seq) == 4 and seq.camera.baseline == pytest.approx(0.12)
    frame = seq.load(2)
    assert frame.right.dtype == np.uint8 and frame.right.ndim == 2 and frame.right[0, 0] == 102
    assert frame.depth is None


def test_stereo_without_right_list_is_refused(tum):
    with pytest.raises(SlamInputError, match="right.txt"):
        open_sequence(tum, _config("mode=stereo"))


def test_stereo_without_baseline_is_refused(tmp_path):
    stamps = 5.0 + np.arange(3) / 20
    root = make_tum(tmp_path / "st", stamps, stamps, right=True)
    with pytest.raises(SlamInputError, match="baseline"):
        open_sequence(root, _config("mode=stereo"))


def test_missing_folder_and_listing(tmp_path):
    with pytest.raises(SlamInputError, match="sequence folder not found"):
        open_sequence(tmp_path / "nope", _config())
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlamInputError, match="rgb.txt") as info:
        open_sequence(tmp_path / "empty", _config())
    assert "\n" not in str(info.value)


def test_listing_naming_a_missing_file_skips_that_frame(tum):
    missing = tum / "rgb" / f"{100 + 2 / 30:.6f}.png"
    missing.unlink()
    seq = open_sequence(tum, _config())
    assert [s.path for s in seq.skipped] == [str(missing)]
    assert "rgb.txt line 5" in seq.skipped[0].reason and "does not exist" in seq.skipped[0].reason
    kept = [int(seq.load(i).image[0, 0, 2]) for i in range(len(seq))]
    assert kept == [0, 1, 4, 5, 7, 8, 9]


def test_listing_with_most_files_missing_is_refused(tum):
    for image in sorted((tum / "rgb").iterdir())[:6]:
        image.unlink()
    with pytest.raises(SlamInputError) as info:
        open_sequence(tum, _config())
    assert "rgb.txt" in str(info.value) and "6 of 10 listed images do not exist" in str(info.value)
    assert "line 3" in str(info.value)


@pytest.mark.parametrize("line, problem", [("abc rgb/x.png", "not a number"), ("1.0", "expected 'timestamp filename'")])
def test_malformed_listing_line(tum, line, problem):
    with (tum / "depth.txt").open("a") as f:
        f.write(line + "\n")
    with pytest.raises(SlamInputError, match=problem) as info:
        open_sequence(tum, _config())
    assert "depth.txt" in str(info.value)


def test_corrupt_png_named_at_load(tum):
    seq = open_sequence(tum, _config())
    bad = Path(seq.load(1).path)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(SlamInputError) as info:
        seq.load(1)
    assert str(bad) in str(info.value) and "cannot decode" in str(info.value)


def test_eight_bit_depth_is_refused(tum):
    depth_file = sorted((tum / "depth").iterdir())[0]
    cv2.imwrite(str(depth_file), np.zeros((H, W), np.uint8))
    with pytest.raises(SlamInputError, match="16-bit") as info:
        open_sequence(tum, _config()).load(0)
    assert depth_file.name in str(info.value)


def test_distortion_is_removed_from_image_and_depth_alike(tmp_path):
    stamps = 1.0 + np.arange(2) / 30
    root = make_tum(tmp_path / "d", stamps, stamps, gt=False)
    w, h = 160, 120
    K = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])
    dist = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    point = np.array([[0.6, -0.4, 1.0]])
    (u, v), = cv2.projectPoints(point, np.zeros(3), np.zeros(3), K, dist)[0].reshape(-1, 2)
    image = np.zeros((h, w, 3), np.uint8)
    cv2.circle(image, (round(u), round(v)), 2, (255, 255, 255), -1)
    depth = np.full((h, w), 10000, np.uint16)
    depth[:, : w // 2] = 5000
    for name in (root / "rgb").iterdir():
        cv2.imwrite(str(name), image)
    for name in (root / "depth").iterdir():
        cv2.imwrite(str(name), depth)
    config = load_config(overrides=["dataset.format=tum", "camera.fx=100", "camera.fy=100", "camera.cx=80",
                                    "camera.cy=60", "camera.dist=[-0.3, 0.1, 0.0, 0.0, 0.0]"])
    frame = open_sequence(root, config).load(0)
    ys, xs = np.nonzero(frame.gray > 128)
    assert abs(xs.mean() - (80 + 100 * 0.6)) < 1.0 and abs(ys.mean() - (60 - 100 * 0.4)) < 1.0
    assert set(np.unique(frame.depth).tolist()) <= {0.0, 1.0, 2.0}  # nearest neighbour: no invented depths


def test_rgbd_without_depth_list_suggests_mono(tum):
    (tum / "depth.txt").unlink()
    with pytest.raises(SlamInputError, match="rgbd mode needs depth.txt"):
        open_sequence(tum, _config())
    assert len(open_sequence(tum, _config("mode=mono"))) == 10
