"""SUITE.yaml: which sequences, which methods, how many runs. Parsed into frozen dataclasses.

    runs: 3                  # runs per (sequence, method) cell; `slam bench --runs N` overrides it
    timeout_s: 900           # a run still going after this long is stopped and reported as failed
    section: bench-suite     # optional: `--markdown` replaces what lies between <!-- SECTION:start/end -->
    title: Results           # optional: the heading of that section
    sequences:
      - name: tum_fr3_teddy_rgbd
        data: tum/rgbd_dataset_freiburg3_teddy   # relative to `--data-root` (as the workers see it)
        config: ../tum_fr3_rgbd.yaml             # relative to this file
        mode: rgbd                               # must be the config's mode; picks SE(3) / Sim(3) alignment
        max_frames: 100                          # optional: only the first N frames
        targets: [ate_rmse_m <= 0.007, fps >= 25]  # optional: run.json metrics, checked on each cell's medians
        note: one line for the report           # optional
      - name: synthetic_rgbd_300
        synthetic: {frames: 300, seed: 0, trajectory: orbit}   # instead of data: see below
        config: ../synthetic_rgbd.yaml
        mode: rgbd
    methods:
      - name: ours
        overrides: [mapping.threaded=false]      # `--set` overrides of the sequence's config
      - name: orb_pnp
        peer: orb_pnp                            # a peer (slam.bench.peers) instead of our system

A `synthetic` sequence is rendered (640x480, 30 fps; stereo when its mode is stereo) by
`slam.synthetic.ensure_sequence` into this machine's cache before any run, or found there. Targets use the
metrics of run.json plus tracked_fraction and tracked_after_init (`slam.bench.jobs.with_derived_metrics`);
a cell meets them when every run succeeded and each median is within its bound; `slam bench` exits 1 otherwise.

Every (sequence, method) pair is checked when the suite is loaded: the config must load with the method's
overrides, so a typo fails in a second rather than after an hour of runs.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slam.config import MODES, load_config
from slam.errors import SlamInputError
from slam.yamlutil import parse_yaml

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # names become folder names
_TOP_KEYS = {"runs", "timeout_s", "section", "title", "sequences", "methods"}
_SEQUENCE_KEYS = {"name", "data", "synthetic", "config", "mode", "max_frames", "targets", "note"}
_SYNTHETIC_KEYS = {"frames", "seed", "trajectory", "fps"}
_METHOD_KEYS = {"name", "peer", "overrides"}
_TARGET = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}
DEFAULT_RUNS = 3
DEFAULT_TIMEOUT_S = 1800.0
DEFAULT_SECTION = "bench-suite"
DEFAULT_TITLE = "Results: our system and peers on the same frames"


@dataclass(frozen=True)
class Target:
    """`metric op bound` (op `<=` or `>=`), checked against the median of a cell's successful runs."""

    metric: str
    op: str
    bound: float

    def met_by(self, value: float | None) -> bool:
        """A missing or non-finite median never meets a target."""
        return value is not None and math.isfinite(value) and _OPS[self.op](value, self.bound)

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Synthetic:
    """A sequence rendered by `slam.synthetic.ensure_sequence` (640x480) instead of read from data."""

    frames: int
    seed: int = 0
    trajectory: str = "orbit"
    fps: float = 30.0


@dataclass(frozen=True)
class BenchSequence:
    name: str
    data: str | None  # relative to the data root; None for a synthetic sequence
    config: Path  # absolute
    mode: str
    max_frames: int | None = None
    synthetic: Synthetic | None = None
    targets: tuple[Target, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class BenchMethod:
    name: str
    peer: str | None = None  # None: our system
    overrides: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name if self.peer is None else f"{self.name} (peer)"


@dataclass(frozen=True)
class Suite:
    path: Path
    sequences: tuple[BenchSequence, ...]
    methods: tuple[BenchMethod, ...]
    runs: int = DEFAULT_RUNS
    timeout_s: float = DEFAULT_TIMEOUT_S
    section: str = DEFAULT_SECTION
    title: str = DEFAULT_TITLE


def load_suite(path: str | Path) -> Suite:
    """Read and check SUITE.yaml; any problem is one SlamInputError naming the file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise SlamInputError("suite file not found", path)
    data = parse_yaml(path.read_text(errors="replace"), path)
    if not isinstance(data, dict):
        raise SlamInputError("a suite must be a mapping with 'sequences' and 'methods'", path)
    _check_keys(data, _TOP_KEYS, "", path)
    sequences = tuple(_sequence(item, f"sequences[{i}]", path) for i, item in enumerate(_list(data, "sequences", path)))
    methods = tuple(_method(item, f"methods[{i}]", path) for i, item in enumerate(_list(data, "methods", path)))
    _check_unique([s.name for s in sequences], "sequences", path)
    _check_unique([m.name for m in methods], "methods", path)
    suite = Suite(
        path.resolve(),
        sequences,
        methods,
        _positive_int(data.get("runs", DEFAULT_RUNS), "runs", path),
        _positive_number(data.get("timeout_s", DEFAULT_TIMEOUT_S), "timeout_s", path),
        _name(data.get("section", DEFAULT_SECTION), "section", path, suffix=""),
        _string(data.get("title", DEFAULT_TITLE), "title", path),
    )
    _check_configs(suite)
    return suite


def _list(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise SlamInputError(f"'{key}' must be a non-empty list", path)
    return value


def _check_keys(item: dict[str, Any], allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(map(str, item)) - allowed)
    if unknown:
        raise SlamInputError(f"{where}unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})", path)


def _sequence(item: Any, where: str, path: Path) -> BenchSequence:
    if not isinstance(item, dict):
        raise SlamInputError(f"{where} must be a mapping", path)
    _check_keys(item, _SEQUENCE_KEYS, f"{where}: ", path)
    name = _name(item.get("name"), where, path)
    if ("data" in item) == ("synthetic" in item):
        raise SlamInputError(f"{where} needs exactly one of 'data' and 'synthetic'", path)
    data, synthetic = None, None
    if "data" in item:
        data = _string(item.get("data"), f"{where}.data", path)
        if PurePosixPath(data).is_absolute() or Path(data).is_absolute():
            raise SlamInputError(f"{where}.data must be relative to --data-root, got '{data}'", path)
    else:
        synthetic = _synthetic(item["synthetic"], f"{where}.synthetic", path)
    config = path.parent / _string(item.get("config"), f"{where}.config", path)
    if not config.is_file():
        raise SlamInputError(f"{where}.config: file not found: {config}", path)
    mode = item.get("mode")
    if mode not in MODES:
        raise SlamInputError(f"{where}.mode must be one of {', '.join(MODES)}, got {mode!r}", path)
    max_frames = item.get("max_frames")
    if max_frames is not None:
        max_frames = _positive_int(max_frames, f"{where}.max_frames", path)
    targets = item.get("targets", [])
    if not isinstance(targets, list):
        raise SlamInputError(f"{where}.targets must be a list of 'metric <= bound' or 'metric >= bound'", path)
    targets = tuple(_target(t, f"{where}.targets[{i}]", path) for i, t in enumerate(targets))
    note = _string(item["note"], f"{where}.note", path) if "note" in item else ""
    return BenchSequence(name, data, config.resolve(), mode, max_frames, synthetic, targets, note)


def _synthetic(item: Any, where: str, path: Path) -> Synthetic:
    from slam.synthetic import TRAJECTORIES

    if not isinstance(item, dict):
        raise SlamInputError(f"{where} must be a mapping of {', '.join(sorted(_SYNTHETIC_KEYS))}", path)
    _check_keys(item, _SYNTHETIC_KEYS, f"{where}: ", path)
    frames = _positive_int(item.get("frames"), f"{where}.frames", path)
    seed = item.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SlamInputError(f"{where}.seed must be a non-negative integer, got {seed!r}", path)
    trajectory = item.get("trajectory", "orbit")
    if trajectory not in TRAJECTORIES:
        raise SlamInputError(f"{where}.trajectory must be one of {', '.join(TRAJECTORIES)}, got {trajectory!r}", path)
    fps = item.get("fps", 30.0)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
        raise SlamInputError(f"{where}.fps must be a number in (0, 1000], got {fps!r}", path)
    return Synthetic(frames, seed, trajectory, float(fps))


def _target(value: Any, where: str, path: Path) -> Target:
    match = _TARGET.match(value) if isinstance(value, str) else None
    bound = _float(match.group(3)) if match else math.nan
    if not math.isfinite(bound):
        raise SlamInputError(f"{where} must be 'metric <= bound' or 'metric >= bound', got {value!r}", path)
    return Target(match.group(1), match.group(2), bound)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _method(item: Any, where: str, path: Path) -> BenchMethod:
    from slam.bench.peers import PEERS

    if not isinstance(item, dict):
        raise SlamInputError(f"{where} must be a mapping", path)
    _check_keys(item, _METHOD_KEYS, f"{where}: ", path)
    name = _name(item.get("name"), where, path)
    peer = item.get("peer")
    if peer is not None and peer not in PEERS:
        raise SlamInputError(f"{where}.peer must be one of {', '.join(PEERS)}, got {peer!r}", path)
    overrides = item.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise SlamInputError(f"{where}.overrides must be a list of 'section.key=value' strings", path)
    return BenchMethod(name, peer, tuple(overrides))


def _check_configs(suite: Suite) -> None:
    """Each sequence's config must load with each method's overrides and be in the sequence's mode."""
    for seq in suite.sequences:
        for method in suite.methods:
            try:
                config = load_config(seq.config, method.overrides)
            except SlamInputError as exc:
                raise SlamInputError(f"sequence '{seq.name}' x method '{method.name}': {exc}", suite.path) from None
            if config.mode != seq.mode:
                raise SlamInputError(
                    f"sequence '{seq.name}': mode is '{seq.mode}' but {seq.config.name} with "
                    f"method '{method.name}' runs in '{config.mode}'",
                    suite.path,
                )


def _check_unique(names: list[str], key: str, path: Path) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise SlamInputError(f"{key}: name '{name}' is used twice", path)
        seen.add(name)


def _name(value: Any, where: str, path: Path, suffix: str = ".name") -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise SlamInputError(f"{where}{suffix} must be letters, digits, '_', '.' or '-', got {value!r}", path)
    return value


def _string(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SlamInputError(f"{where} must be a non-empty string, got {value!r}", path)
    return value


def _positive_int(value: Any, where: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SlamInputError(f"{where} must be a positive integer, got {value!r}", path)
    return value


def _positive_number(value: Any, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise SlamInputError(f"{where} must be a positive number, got {value!r}", path)
    return float(value)
