"""Video files, image folders and webcams: ordering, timestamps, sequential reading, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import open_sequence
from slam.io.calibration import Calibration, write_calibration
from slam.io.video import EndOfStream, StreamSequence, UnknownLengthError, open_webcam, order_and_time

W, H = 64, 48
INTRINSICS = ["camera.fx=50", "camera.fy=50", "camera.cx=32", "camera.cy=24"]


def _config(fmt: str, *extra: str):
    return load_config(overrides=[f"dataset.format={fmt}", "mode=mono", *INTRINSICS, *extra])


def _frame(value: int) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def make_video(path: Path, n: int = 8, fps: float = 15.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(_frame(20 * i + 10))
    writer.release()
    return path


def _level(frame) -> int:
    return int(round(float(frame.gray.mean())))


def test_video_reads_in_order_with_fps_timestamps(tmp_path):
    seq = open_sequence(make_video(tmp_path / "v.avi"), _config("video"))
    assert len(seq) == 8 and seq.camera.width == W and seq.camera.baseline == 0.0
    frames = list(seq)
    assert [f.index for f in frames] == list(range(8))
    assert [f.timestamp for f in frames] == pytest.approx(np.arange(8) / 15.0)
    levels = [_level(f) for f in frames]
    assert all(abs(a - (20 * i + 10)) <= 3 for i, a in enumerate(levels))


def test_video_random_access_backwards_reopens(tmp_path):
    seq = open_sequence(make_video(tmp_path / "v.avi"), _config("video"))
    assert abs(_level(seq.load(5)) - 110) <= 3
    assert abs(_level(seq.load(2)) - 50) <= 3
    assert abs(_level(seq.load(3)) - 70) <= 3
    with pytest.raises(EndOfStream, match="v.avi"):
        seq.load(12)


def test_stream_stops_cleanly_where_the_video_really_ends(tmp_path):
    seq = open_sequence(make_video(tmp_path / "v.avi", n=4), _config("video"))
    # A header that over-counts (common with some containers): iteration ends at the real end.
    longer = StreamSequence(name=seq.name, camera=seq.camera, timestamps=np.arange(10) / 15.0, load=seq.load)
    assert len(list(longer)) == 4 and "ends" in longer.warnings[0]


def test_video_errors(tmp_path):
    with pytest.raises(SlamInputError, match="video file not found"):
        open_sequence(tmp_path / "none.mp4", _config("video"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(SlamInputError, match="junk.mp4"):
        open_sequence(junk, _config("video"))
    with pytest.raises(SlamInputError, match="only mono"):
        open_sequence(make_video(tmp_path / "v.avi"), _config("video", "mode=stereo"))
    with pytest.raises(SlamInputError, match="no camera intrinsics"):
        open_sequence(make_video(tmp_path / "v.avi"), load_config(overrides=["dataset.format=video", "mode=mono"]))


def test_video_calibration_beside_the_file(tmp_path):
    write_calibration(tmp_path / "calibration.yaml", Calibration(70.0, 71.0, 31.0, 23.0, W, H))
    seq = open_sequence(make_video(tmp_path / "v.avi"), load_config(overrides=["dataset.format=video",
                                                                                "mode=mono"]))
    assert (seq.camera.fx, seq.camera.fy) == (70.0, 71.0)


def _image_folder(root: Path, names: list[str]) -> Path:
    root.mkdir()
    for i, name in enumerate(names):
        cv2.imwrite(str(root / name), _frame(10 * i))
    return root


def test_image_folder_with_second_names(tmp_path):
    names = ["1341841873.305888.png", "1341841873.273798.png", "1341841873.341935.png"]
    seq = open_sequence(_image_folder(tmp_path / "imgs", names), _config("images"))
    np.testing.assert_allclose(seq.timestamps, [1341841873.273798, 1341841873.305888, 1341841873.341935])
    assert _level(seq.load(0)) == 10  # sorted by time, not by the order written


def test_image_folder_with_nanosecond_names_and_calibration(tmp_path):
    names = ["1403715273312143104.png", "1403715273262142976.png"]
    folder = _image_folder(tmp_path / "imgs", names)
    write_calibration(folder / "calibration.yaml", Calibration(40.0, 40.0, 32.0, 24.0, W, H))
    seq = open_sequence(folder, load_config(overrides=["dataset.format=images", "mode=mono"]))
    assert seq.timestamps[1] - seq.timestamps[0] == pytest.approx(0.05, abs=1e-6)
    assert seq.camera.fx == 40.0 and len(seq) == 2


def test_image_folder_with_counters_is_sorted_naturally(tmp_path):
    names = ["frame10.jpg", "frame2.jpg", "frame1.jpg", "notes.txt"]
    folder = _image_folder(tmp_path / "imgs", names[:3])
    (folder / names[3]).write_text("not an image")
    seq = open_sequence(folder, _config("images", "camera.fps=10"))
    assert [Path(seq.load(i).path).name for i in range(3)] == ["frame1.jpg", "frame2.jpg", "frame10.jpg"]
    np.testing.assert_allclose(seq.timestamps, [0.0, 0.1, 0.2])


def test_order_and_time_counters_use_index_over_fps():
    files, stamps = order_and_time([Path("000002.png"), Path("000000.png"), Path("000001.png")], 20.0)
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"]
    np.testing.assert_allclose(stamps, [0.0, 0.05, 0.1])


def test_image_folder_errors(tmp_path):
    with pytest.raises(SlamInputError, match="image folder not found"):
        open_sequence(tmp_path / "none", _config("images"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlamInputError, match="no images"):
        open_sequence(tmp_path / "empty", _config("images"))
    folder = _image_folder(tmp_path / "imgs", ["a.png", "b.png"])
    cv2.imwrite(str(folder / "b.png"), np.zeros((10, 10, 3), np.uint8))
    seq = open_sequence(folder, _config("images"))
    with pytest.raises(SlamInputError, match="b.png: image is 10x10"):
        seq.load(1)
    (folder / "a.png").write_bytes(b"broken")
    with pytest.raises(SlamInputError, match="a.png"):
        open_sequence(folder, _config("images"))


def test_webcam_that_cannot_be_opened():
    with pytest.raises(SlamInputError, match="webcam 97: cannot open"):
        open_sequence("97", _config("webcam"))


def test_webcam_needs_config_intrinsics():
    with pytest.raises(SlamInputError, match="needs intrinsics"):
        open_webcam(0, load_config(overrides=["dataset.format=webcam", "mode=mono"]))


def test_live_capture_has_no_length_but_streams(tmp_path):
    # A capture opened by name behaves like a camera: no random access, no length.
    seq = open_webcam(str(make_video(tmp_path / "v.avi", n=5)), _config("webcam"))
    with pytest.raises(UnknownLengthError):
        len(seq)
    assert isinstance(UnknownLengthError("x"), TypeError) and bool(seq)
    first = list(seq.frames(max_frames=2))
    assert [f.index for f in first] == [0, 1] and first[1].timestamp >= first[0].timestamp
    rest = list(seq)  # the camera gave frame 0 at open, 2 more above: 2 are left, then it stops
    assert len(rest) == 2 and seq.warnings
