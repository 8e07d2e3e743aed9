"""Fuzzing the configuration parsers: config YAML files, `--set` overrides and calibration.yaml.

Random and mutated input must give a valid result or a one-line SlamInputError (naming the file).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from slam.config import DATASET_FORMATS, MODES, Config, load_config, to_dict
from slam.errors import SlamInputError
from slam.io.calibration import read_calibration
from tests.unit.fuzzing import FUZZ, NASTY, nasty_text, parse_or_refuse, text_input, write

REPO = Path(__file__).resolve().parents[2]
CONFIG_TEXTS = [p.read_text() for p in sorted((REPO / "configs").glob("*.yaml"))]
FULL_CONFIG = yaml.safe_dump(to_dict(Config()), sort_keys=False)
CALIBRATION = (
    "fx: 500.0\nfy: 501.5\ncx: 320\ncy: 240.5\nwidth: 640\nheight: 480\ndist: [0.1, -0.2, 0.0, 0.0]\n"
    "baseline: 0.1\ndepth_scale: 5000\n"
)


def leaf_keys(section: object = Config(), prefix: str = "") -> list[str]:
    """Every settable key, dotted: mode, camera.fx, ..."""
    keys = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        keys += leaf_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return keys


KEYS = leaf_keys()


def check_config(config: Config) -> None:
    assert isinstance(config, Config)
    assert config.mode in MODES and config.dataset.format in DATASET_FORMATS
    for value in _leaves(to_dict(config)):
        assert not isinstance(value, float) or math.isfinite(value), value


def _leaves(data):
    if isinstance(data, dict):
        for value in data.values():
            yield from _leaves(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from _leaves(value)
    else:
        yield data


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_config")


@FUZZ
@given(text=st.one_of(*(text_input(t) for t in CONFIG_TEXTS), text_input(FULL_CONFIG)))
@example(text="mode: 2001-13-45\n")  # found: PyYAML's ValueError for an impossible date escaped
@example(text="seed: !!float x\n")  # found: ValueError from PyYAML's float constructor
@example(text="[" * 2000)  # found: RecursionError
@example(text="features:\n  scale_factor: 1" + "0" * 400 + "\n")  # found: OverflowError coercing to float
def test_config_file(folder, text):
    path = write(folder / "config.yaml", text)
    config = parse_or_refuse(lambda: load_config(path), path)
    if config is not None:
        check_config(config)


def test_config_file_with_invalid_utf8(folder):
    """A config that is not UTF-8 raised UnicodeDecodeError (text strategies only write UTF-8)."""
    path = folder / "latin1.yaml"
    path.write_bytes(b"mode: rgbd\n# caf\xe9\nseed: x\n")
    with pytest.raises(SlamInputError, match="'seed' expects int"):
        load_config(path)


override = st.builds(
    lambda key, value: f"{key}={value}",
    st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k.split(".")[0]), nasty_text()),
    st.one_of(
        st.sampled_from(["1", "0.5", "true", "orb", "rgbd", "[1, 2, 3, 4]", "null"]),
        st.sampled_from(NASTY),
        st.text(max_size=10),
    ),
)


@FUZZ
@given(overrides=st.lists(st.one_of(override, nasty_text()), max_size=4))
def test_overrides(overrides):
    try:
        config = load_config(None, overrides)
    except SlamInputError as exc:
        assert len(str(exc).splitlines()) == 1
        return
    check_config(config)


@FUZZ
@given(text=text_input(CALIBRATION))
@example(text=CALIBRATION.replace("fx: 500.0", "fx: 1" + "0" * 400))  # found: OverflowError in math.isfinite
@example(text=CALIBRATION + "2001-13-45: 1\n")  # found: ValueError from PyYAML
def test_calibration_yaml(folder, text):
    path = write(folder / "calibration.yaml", text)
    calibration = parse_or_refuse(lambda: read_calibration(path), path)
    if calibration is None:
        return
    assert calibration.fx > 0 and calibration.fy > 0 and calibration.width > 0 and calibration.height > 0
    assert all(math.isfinite(v) for v in (calibration.fx, calibration.fy, calibration.cx, calibration.cy))
    assert len(calibration.dist) in (0, 4, 5, 8) and all(math.isfinite(d) for d in calibration.dist)
