"""Fuzzing the TUM parsers: image lists, trajectory / ground-truth files, and whole folders opened and read.

Random and mutated input must give a valid result or a one-line SlamInputError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from slam.config import load_config
from slam.errors import SlamInputError
from slam.io import load_groundtruth, open_sequence
from slam.io.base import MAX_MISSING_FRACTION
from slam.io.tum import read_listing
from slam.trajectory import read_tum
from tests.unit.fuzzing import FUZZ, lines_of, number_token, parse_or_refuse, text_input, write

STAMPS = [1.0 + i / 30 for i in range(6)]
LISTING = "# color images\n# timestamp filename\n" + "".join(f"{t:.6f} rgb/{t:.6f}.png\n" for t in STAMPS)
TRAJECTORY = "# timestamp tx ty tz qx qy qz qw\n" + "".join(
    f"{t:.4f} {0.1 * i:.3f} -0.2 1.5 0.0 0.0 {np.sin(0.05 * i):.6f} {np.cos(0.05 * i):.6f}\n"
    for i, t in enumerate(STAMPS)
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny TUM RGB-D folder (8x6 images): the listings are rewritten by each example."""
    root = tmp_path_factory.mktemp("fuzz_tum")
    for sub in ("rgb", "depth"):
        (root / sub).mkdir()
    for i, t in enumerate(STAMPS):
        cv2.imwrite(str(root / "rgb" / f"{t:.6f}.png"), np.full((6, 8, 3), 20 * i, np.uint8))
        cv2.imwrite(str(root / "depth" / f"{t:.6f}.png"), np.full((6, 8), 5000 + i, np.uint16))
    return root


def check_listing(listing) -> None:
    t = listing.timestamps
    assert len(t) == len(listing.files) >= 1
    assert np.all(np.isfinite(t)) and np.all(np.diff(t) > 0)
    assert all(f.is_file() for f in listing.files)
    missing = sum("does not exist" in s.reason for s in listing.skipped)
    assert missing <= MAX_MISSING_FRACTION * (len(t) + len(listing.skipped))


def check_trajectory(trajectory, strictly_increasing: bool = False) -> None:
    assert len(trajectory) >= 1 and trajectory.poses.shape == (len(trajectory), 4, 4)
    assert np.all(np.isfinite(trajectory.poses)) and np.all(np.isfinite(trajectory.timestamps))
    steps = np.diff(trajectory.timestamps)
    assert np.all(steps > 0) if strictly_increasing else np.all(steps >= 0)
    R = trajectory.poses[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)


@FUZZ
@given(
    text=st.one_of(
        text_input(LISTING),
        lines_of(st.one_of(number_token(), st.sampled_from([f"rgb/{t:.6f}.png" for t in STAMPS])), 1, 3),
    )
)
@example(text="1.0 " + "a" * 300 + "\n")  # found: a name too long for the file system raised OSError
@example(text="1.0 rgb/\x00.png\n")
def test_image_listing(folder, text):
    path = write(folder / "rgb.txt", text)
    listing = parse_or_refuse(lambda: read_listing(path), path)
    if listing is not None:
        check_listing(listing)


@FUZZ
@given(text=st.one_of(text_input(TRAJECTORY), lines_of(number_token(), 7, 9)), lenient=st.booleans())
def test_trajectory_file(tmp_path_factory, text, lenient):
    path = write(tmp_path_factory.getbasetemp() / "fuzz_trajectory.txt", text)
    notes: list[str] | None = [] if lenient else None
    trajectory = parse_or_refuse(lambda: read_tum(path, notes), path)
    if trajectory is not None:
        check_trajectory(trajectory, strictly_increasing=lenient)
        assert all(str(path) in note and "\n" not in note for note in notes or [])


@FUZZ
@given(text=text_input(TRAJECTORY))
def test_groundtruth_file_dispatch(tmp_path_factory, text):
    path = write(tmp_path_factory.getbasetemp() / "fuzz_gt.txt", text)
    trajectory = parse_or_refuse(lambda: load_groundtruth(path, notes=[]), path)
    if trajectory is not None:
        check_trajectory(trajectory)


@settings(FUZZ, max_examples=60)
@given(
    rgb=text_input(LISTING),
    depth=text_input(LISTING.replace("rgb", "depth")),
    gt=st.one_of(st.none(), text_input(TRAJECTORY)),
)
def test_whole_folder_opens_and_reads(folder, rgb, depth, gt):
    """Broken listings and ground truth: the folder is refused at open, or every frame reads or is skipped."""
    write(folder / "rgb.txt", rgb)
    write(folder / "depth.txt", depth)
    (folder / "groundtruth.txt").unlink(missing_ok=True)
    if gt is not None:
        write(folder / "groundtruth.txt", gt)
    config = load_config(
        overrides=[
            "dataset.format=tum",
            "camera.fx=10",
            "camera.fy=10",
            "camera.cx=4",
            "camera.cy=3",
            "dataset.prefetch=0",
        ]
    )
    try:
        sequence = open_sequence(folder, config)
    except SlamInputError as exc:
        assert "\n" not in str(exc) and str(folder) in str(exc)
        return
    skipped_at_open = len(sequence.skipped)
    frames = list(sequence.frames())
    assert len(frames) + len(sequence.skipped) - skipped_at_open == len(sequence)
    for frame in frames:
        assert frame.image.shape == (6, 8, 3) and frame.depth.shape == (6, 8)
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    if sequence.groundtruth is not None:
        check_trajectory(sequence.groundtruth, strictly_increasing=True)
