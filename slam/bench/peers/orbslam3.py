"""ORB-SLAM3 as a benchmark peer: the whole system (tracking, local mapping, loop closing), in its own process.

ORB-SLAM3 is GPLv3, so it is never a dependency of this package and never imported here: it runs from the
pyorbslam3 wheel (ORB-SLAM3 v1.0, statically linked) in a virtual environment of its own, made by

    slam install-orbslam3            # ~/.cache/slam/orbslam3/venv ($XDG_CACHE_HOME honoured)

or any Python with pyorbslam3 named by SLAM_ORBSLAM3_PYTHON. Without either, the peer's runs are reported
as skipped. This process reads the frames with the project's readers (same frames, same rectification,
same ground truth as our runs) and sends them over a pipe to `orbslam3_driver.py`, which that Python
executes by path; the driver times each track call itself and, at the end, writes ORB-SLAM3's trajectory
of every localised frame and reports the peak memory of its own process.

Settings: a legacy-format ORB-SLAM3 settings file is written into the run folder for each run, from our
reader's camera (rectified / undistorted images, so no distortion) and ORB-SLAM3's own example settings for
the dataset (features, FAST thresholds, close-depth threshold). The newer format (`File.version: "1.0"`)
is avoided: v1.0 crashes on its stereo `Camera.type: "Rectified"`.

Vocabulary: SLAM_ORBSLAM3_VOCAB (or `slam install-orbslam3 --vocabulary PATH`) names ORB-SLAM3's ORBvoc.txt.
Without one, our own ORB vocabulary (10^4 words, trained on synthetic renders) is written in DBoW2's text
format and used. Its depth matters for tracking, not only for place recognition: ORB-SLAM3 groups each
frame's features by the vocabulary node 4 levels above the words and matches keyframe to frame only within
a group (SearchByBoW: the reference-keyframe tracking that monocular mode leans on, relocalisation; and
SearchForTriangulation in local mapping). Written as it is (4 levels) every feature falls in the root, and
monocular tracking loses the map a few frames after initialisation (teddy: 30 of 200 frames tracked). So it
is written 6 levels deep, the depth of ORBvoc.txt, with the same words (`slam.place.dbow2`): the groups are
then its 100 level-2 nodes, as ORBvoc.txt's are. Relocalisation and loop detection still depend on the
words themselves and may be weaker than with ORBvoc.txt. run.json says which vocabulary a run used.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slam.bench.peers import PeerUnavailable
from slam.config import Config
from slam.errors import SlamInputError
from slam.io import FrameData
from slam.trajectory import Trajectory, read_tum

PYORBSLAM3 = "pyorbslam3==0.1.1"
PYTHON_ENV = "SLAM_ORBSLAM3_PYTHON"
VOCAB_ENV = "SLAM_ORBSLAM3_VOCAB"
DRIVER = Path(__file__).resolve().with_name("orbslam3_driver.py")
INSTALL_HINT = "run `slam install-orbslam3` (or set SLAM_ORBSLAM3_PYTHON to a Python with pyorbslam3)"
OUR_VOCABULARY_NOTE = (
    "vocabulary: ours (10k ORB words, written as a 6-level DBoW2 tree like ORBvoc.txt), not ORBvoc.txt: "
    "relocalisation and loop detection may be weaker"
)
# ORB-SLAM3 (Frame/KeyFrame::ComputeBoW) groups features by the vocabulary node this many levels above the
# words; ORBvoc.txt is k = 10, L = 6, so its groups are the 100 nodes of level 2. Ours is written as deep.
ORBSLAM_LEVELS_UP = 4
ORBVOC_LEVELS = ORBSLAM_LEVELS_UP + 2  # groups at level 2, as ORBvoc.txt's
_VOCAB_POINTER = "vocabulary-path"  # in the cache folder: the ORBvoc.txt given to install-orbslam3


# ---- where things live ------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/slam/orbslam3, else ~/.cache/slam/orbslam3."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "slam" / "orbslam3"


def default_venv() -> Path:
    return cache_dir() / "venv"


def peer_python() -> Path:
    """The Python that runs the driver: SLAM_ORBSLAM3_PYTHON, else the default venv's; PeerUnavailable if none."""
    named = os.environ.get(PYTHON_ENV, "").strip()
    if named:
        if not Path(named).is_file():
            raise PeerUnavailable(f"ORB-SLAM3 peer: {PYTHON_ENV}={named} does not exist; {INSTALL_HINT}")
        return Path(named)
    python = default_venv() / "bin" / "python"
    if not python.is_file():
        raise PeerUnavailable(f"ORB-SLAM3 peer not installed: {INSTALL_HINT}")
    return python


def vocabulary_file() -> tuple[Path, str]:
    """(DBoW2 text vocabulary, what it is): SLAM_ORBSLAM3_VOCAB, else the one given at install, else ours
    (written once into the cache folder)."""
    named = os.environ.get(VOCAB_ENV, "").strip()
    if not named and (cache_dir() / _VOCAB_POINTER).is_file():
        named = (cache_dir() / _VOCAB_POINTER).read_text().strip()
    if named:
        if not Path(named).is_file():
            raise SlamInputError(f"ORB-SLAM3 vocabulary not found (from {VOCAB_ENV} or install-orbslam3)", named)
        return Path(named), "given"
    from slam.place.dbow2 import write_dbow2_text
    from slam.place.vocabulary import DEFAULT_VOCABULARY, load_vocabulary

    digest = hashlib.sha256(DEFAULT_VOCABULARY.read_bytes()).hexdigest()[:12]
    path = cache_dir() / f"slam-orb-vocab-{digest}-L{ORBVOC_LEVELS}.txt"
    if not path.is_file():
        vocabulary = load_vocabulary(DEFAULT_VOCABULARY)
        write_dbow2_text(vocabulary, path, levels=max(vocabulary.levels, ORBVOC_LEVELS))
    return path, "ours"


# ---- settings -----------------------------------------------------------------------------------------------

# ORB-SLAM3's example settings (Examples/<Sensor>/<dataset>.yaml, v1.0): features, FAST thresholds (initial,
# minimum), close/far depth threshold in baselines, and for RGB-D its TUM stereo baseline (bf = fx * b).
_ORB = {
    ("tum", "rgbd"): dict(features=1000, fast=(20, 7), th_depth=40.0, rgbd_baseline=0.0747),  # RGB-D/TUM3
    ("tum", "mono"): dict(features=1000, fast=(20, 7)),  # Monocular/TUM3
    ("kitti", "stereo"): dict(features=2000, fast=(12, 7), th_depth=40.0),  # Stereo/KITTI04-12
    ("kitti00-02", "stereo"): dict(features=2000, fast=(20, 7), th_depth=35.0),  # Stereo/KITTI00-02
    ("kitti", "mono"): dict(features=2000, fast=(20, 7)),  # Monocular/KITTI04-12 (and 00-02, 03)
    ("euroc", "stereo"): dict(features=1200, fast=(20, 7), th_depth=35.0),  # Stereo/EuRoC
    ("euroc", "mono"): dict(features=1000, fast=(20, 7)),  # Monocular/EuRoC
}
_VIEWER = {  # ORB-SLAM3 reads these even without a viewer (MapDrawer); values from its TUM examples
    "Viewer.KeyFrameSize": 0.05,
    "Viewer.KeyFrameLineWidth": 1.0,
    "Viewer.GraphLineWidth": 0.9,
    "Viewer.PointSize": 2.0,
    "Viewer.CameraSize": 0.08,
    "Viewer.CameraLineWidth": 3.0,
    "Viewer.ViewpointX": 0.0,
    "Viewer.ViewpointY": -0.7,
    "Viewer.ViewpointZ": -1.8,
    "Viewer.ViewpointF": 500.0,
}


def orb_settings(config: Config, sequence_name: str) -> dict[str, Any]:
    """ORB-SLAM3's own per-dataset values for this run; a dataset it has no example for gets our config's."""
    fmt, mode = config.dataset.format, config.mode
    if fmt == "kitti" and mode == "stereo" and sequence_name in ("00", "01", "02"):
        fmt = "kitti00-02"
    known = _ORB.get((fmt, mode))
    if known is not None:
        return dict(known)
    f = config.features
    return dict(
        features=f.n_features,
        fast=(f.fast_threshold, f.min_fast_threshold),
        th_depth=float(config.camera.depth_threshold),
    )


def settings_text(config: Config, camera, sequence_name: str) -> str:
    """A legacy-format ORB-SLAM3 settings file for our reader's (rectified, undistorted) camera."""
    orb = orb_settings(config, sequence_name)
    mode = config.mode
    fps = config.camera.fps or 30.0
    values: dict[str, Any] = {
        "Camera.type": '"PinHole"',
        "Camera.fx": float(camera.fx),
        "Camera.fy": float(camera.fy),
        "Camera.cx": float(camera.cx),
        "Camera.cy": float(camera.cy),
        "Camera.k1": 0.0,
        "Camera.k2": 0.0,
        "Camera.p1": 0.0,
        "Camera.p2": 0.0,
        "Camera.width": int(camera.width),
        "Camera.height": int(camera.height),
        "Camera.fps": float(fps),
        "Camera.RGB": 0,  # our readers give BGR (or gray) images
    }
    if mode in ("rgbd", "stereo"):
        baseline = orb.get("rgbd_baseline", camera.baseline) if mode == "rgbd" else camera.baseline
        if not baseline or baseline <= 0:
            raise SlamInputError(f"ORB-SLAM3 peer: {mode} needs a positive baseline, the camera has {baseline}")
        values["Camera.bf"] = float(camera.fx * baseline)
        values["ThDepth"] = float(orb["th_depth"])
    if mode == "rgbd":
        values["DepthMapFactor"] = 1.0  # depth is sent in metres
    values.update(
        {
            "ORBextractor.nFeatures": int(orb["features"]),
            "ORBextractor.scaleFactor": 1.2,
            "ORBextractor.nLevels": 8,
            "ORBextractor.iniThFAST": int(orb["fast"][0]),
            "ORBextractor.minThFAST": int(orb["fast"][1]),
            **_VIEWER,
        }
    )
    lines = ["%YAML:1.0", "# ORB-SLAM3 settings written by slam.bench.peers.orbslam3 (legacy format)"]
    lines += [f"{key}: {_yaml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value) if "e" not in repr(value) else f"{value:.12f}"  # ORB-SLAM3 wants reals with a point
    return str(value)


# ---- the peer ---------------------------------------------------------------------------------------------


def make_system(config: Config, sequence, out_dir: Path) -> OrbSlam3:
    return OrbSlam3(config, sequence, Path(out_dir))


class OrbSlam3:
    """The driver process and the pipe to it (see `loop.SlamSystem`)."""

    _SENSORS = ("rgbd", "stereo", "mono")

    def __init__(self, config: Config, sequence, out_dir: Path):
        if config.mode not in self._SENSORS:
            raise SlamInputError(f"ORB-SLAM3 peer: unsupported mode {config.mode!r}")
        python = peer_python()
        vocabulary, kind = vocabulary_file()
        settings = out_dir / "orbslam3_settings.yaml"
        settings.write_text(settings_text(config, sequence.camera, sequence.name))
        self.mode = config.mode
        self.out_dir = out_dir
        self.info: dict[str, Any] = {"orbslam3_vocabulary": str(vocabulary), "orbslam3_python": str(python)}
        if kind == "ours":
            self.info["note"] = OUR_VOCABULARY_NOTE
        self._log = open(out_dir / "orbslam3.log", "wb")
        self._proc = subprocess.Popen(
            [str(python), str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        init = {"cmd": "init", "mode": self.mode, "vocabulary": str(vocabulary), "settings": str(settings)}
        reply = self._request(init)
        self.info["orbslam3_load_s"] = reply["load_s"]

    def track(self, frame: FrameData) -> tuple[bool, float]:
        if self.mode == "rgbd":
            if frame.depth is None:
                raise SlamInputError("ORB-SLAM3 peer: an RGB-D frame without depth", frame.path)
            arrays = [frame.image, frame.depth.astype(np.float32, copy=False)]
        elif self.mode == "stereo":
            if frame.right is None:
                raise SlamInputError("ORB-SLAM3 peer: a stereo frame without its right image", frame.path)
            left, right = frame.image, frame.right
            if left.ndim != right.ndim:  # a colour left beside a grey right (the synthetic stereo renders):
                # ORB-SLAM3 converts both images or neither (Camera.RGB 0: BGR), so the left goes grey here as
                # its own conversion would make it
                left = cv2.cvtColor(left, cv2.COLOR_BGR2GRAY) if left.ndim == 3 else left
                right = cv2.cvtColor(right, cv2.COLOR_BGR2GRAY) if right.ndim == 3 else right
            arrays = [left, right]
        else:
            arrays = [frame.image]
        reply = self._request({"cmd": "track", "t": float(frame.timestamp)}, arrays)
        return bool(reply["tracked"]), float(reply["ms"])

    def finish(self) -> tuple[Trajectory, dict[str, Any]]:
        path = self.out_dir / "trajectory.tum"  # rewritten by the loop in our own TUM writing
        reply = self._request({"cmd": "finish", "trajectory": str(path)})
        self._proc.wait(timeout=60)
        trajectory = read_tum(path) if reply["poses"] else Trajectory(np.zeros(0), np.zeros((0, 4, 4)))
        return trajectory, {**self.info, "peak_rss_mb": float(reply["peak_rss_mb"]),
                            "keyframes": int(reply.get("keyframes", 0))}

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._log.close()

    def _request(self, header: dict[str, Any], arrays: list[np.ndarray] = ()) -> dict[str, Any]:
        arrays = [np.ascontiguousarray(a) for a in arrays]
        header = {**header, "arrays": [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]}
        data = json.dumps(header).encode()
        try:
            self._proc.stdin.write(struct.pack("<I", len(data)) + data)
            for a in arrays:
                self._proc.stdin.write(memoryview(a).cast("B"))
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except BrokenPipeError:
            line = b""
        if not line:
            code = self._proc.wait()
            raise RuntimeError(f"ORB-SLAM3 driver exited with status {code} ({self._log_tail()})")
        reply = json.loads(line)
        if reply.get("unavailable"):
            raise PeerUnavailable(f"ORB-SLAM3 peer not installed: {reply['unavailable']}; {INSTALL_HINT}")
        if not reply.get("ok"):
            raise RuntimeError(f"ORB-SLAM3 driver: {reply.get('error')} (log: {self.out_dir / 'orbslam3.log'})")
        return reply

    def _log_tail(self) -> str:
        self._log.flush()
        text = (self.out_dir / "orbslam3.log").read_text(errors="replace").strip().splitlines()
        return f"last log line: {text[-1][:200]}" if text else "empty log"


# ---- installation -----------------------------------------------------------------------------------------


def install(venv: Path | None = None, vocabulary: str | None = None, python: str | None = None) -> Path:
    """Make the peer's venv and pip-install pyorbslam3 (binary wheel only) into it; record `vocabulary`.

    Returns the venv's python. Failures are one-line SlamInputErrors.
    """
    venv = Path(venv) if venv else default_venv()
    if vocabulary is not None and not Path(vocabulary).is_file():
        raise SlamInputError("ORB-SLAM3 vocabulary not found", vocabulary)
    base = python or sys.executable
    _step([base, "-m", "venv", "--clear", str(venv)], f"could not make a venv at {venv}")
    peer = venv / "bin" / "python"
    _step(
        [str(peer), "-m", "pip", "install", "--disable-pip-version-check", "--only-binary=:all:", PYORBSLAM3, "numpy"],
        f"pip could not install {PYORBSLAM3} into {venv} (it needs PyPI and CPython 3.11 on x86-64 Linux)",
    )
    _step([str(peer), "-c", "import pyorbslam3"], f"{PYORBSLAM3} installed but does not import")
    if vocabulary is not None:
        cache_dir().mkdir(parents=True, exist_ok=True)
        (cache_dir() / _VOCAB_POINTER).write_text(str(Path(vocabulary).resolve()) + "\n")
    return peer


def _step(command: list[str], message: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise SlamInputError(f"{message}: {detail}")
