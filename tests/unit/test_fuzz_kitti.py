"""Fuzzing the KITTI parsers: calib.txt (and the stereo baseline from it), times.txt and poses files.

Random and mutated input must give a valid result or a one-line SlamInputError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slam.errors import SlamInputError
from slam.io.kitti import read_calib, read_times, stereo_baseline
from slam.trajectory import read_kitti_poses
from tests.unit.fuzzing import FUZZ, lines_of, number_token, parse_or_refuse, text_input, write


def _p(tx: float) -> str:
    return (
        f"7.070912e+02 0.000000e+00 6.018873e+02 {tx:e} 0.000000e+00 7.070912e+02 1.831104e+02 "
        "0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00"
    )


CALIB = f"P0: {_p(0.0)}\nP1: {_p(-379.8145)}\nP2: {_p(45.38)}\nP3: {_p(-337.2)}\nTr: " + " ".join(["0.5"] * 12) + "\n"
TIMES = "".join(f"{0.103 * i:e}\n" for i in range(5))
POSES = "".join(f"1 0 0 {0.5 * i} 0 1 0 0 0 0 1 {float(i)}\n" for i in range(5))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_kitti")


@FUZZ
@given(
    text=st.one_of(
        text_input(CALIB), lines_of(st.one_of(st.sampled_from(["P0:", "P1:", "Tr:", "P9:"]), number_token()), 1, 14)
    )
)
def test_calib(folder, text):
    path = write(folder / "calib.txt", text)
    calib = parse_or_refuse(lambda: read_calib(path), path)
    if calib is None:
        return
    assert calib["P0"].shape == (3, 4) and calib["P0"][0, 0] > 0 and calib["P0"][1, 1] > 0
    assert all(np.all(np.isfinite(m)) for m in calib.values())
    baseline = parse_or_refuse(lambda: stereo_baseline(calib, path), path)
    assert baseline is None or 0 < baseline < np.inf


@FUZZ
@given(text=st.one_of(text_input(TIMES), lines_of(number_token(), 1, 2)))
def test_times(folder, text):
    path = write(folder / "times.txt", text)
    times = parse_or_refuse(lambda: read_times(path), path)
    if times is not None:
        assert len(times) >= 1 and times.dtype == float and np.all(np.isfinite(times))


@FUZZ
@given(text=st.one_of(text_input(POSES), lines_of(number_token(), 11, 13)), timed=st.booleans(), lenient=st.booleans())
def test_poses(folder, text, timed, lenient):
    path = write(folder / "poses.txt", text)
    notes: list[str] | None = [] if lenient else None
    times = np.arange(5) * 0.1 if timed else None
    trajectory = parse_or_refuse(lambda: read_kitti_poses(path, times, notes), path)
    if trajectory is None:
        return
    assert len(trajectory) >= 1 and np.all(np.isfinite(trajectory.poses))
    assert np.array_equal(trajectory.poses[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (len(trajectory), 1)))
    if timed:
        assert set(trajectory.timestamps) <= set(times)


def test_a_zero_p1_focal_length_is_refused(folder):
    """Found by test_calib: P1's fx of 0 gave an infinite baseline instead of an error."""
    path = write(folder / "calib_zero_fx.txt", CALIB.replace(f"P1: {_p(-379.8145)}", "P1: " + " ".join(["0"] * 12)))
    with pytest.raises(SlamInputError, match="P1 has a non-positive focal length"):
        stereo_baseline(read_calib(path), path)
