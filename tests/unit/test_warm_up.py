"""System.warm_up loads every numba kernel a run calls: none is compiled (or loaded from the cache) once frames flow,
where it would stall the thread that first calls it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from numba.core.dispatcher import Dispatcher
from slam.config import load_config
from slam.io import open_sequence
from slam.system import System

late = []
compile_ = Dispatcher.compile
def watched(self, sig):
    if armed:
        late.append(self.py_func.__module__ + "." + self.py_func.__qualname__)
    return compile_(self, sig)
Dispatcher.compile = watched

armed = False
config = load_config(sys.argv[1])
sequence = open_sequence(sys.argv[2], config)
system = System(config, sequence.camera, threaded=False)
system.warm_up()
armed = True
states = [system.process(frame).state.value for frame in sequence.frames()]
system.shutdown(finish_mapping=True)
print(states.count("ok"), len(system.map.keyframes), " ".join(sorted(set(late))) or "-")
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("config", ["synthetic_rgbd.yaml", "synthetic_mono.yaml"])
def test_no_kernel_is_compiled_once_frames_flow(config, synthetic_rgbd_seq):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / "configs" / config), str(synthetic_rgbd_seq)],
                         capture_output=True, text=True, check=True).stdout.split()
    tracked, keyframes, late = int(out[0]), int(out[1]), out[2:]
    assert tracked >= 30 and keyframes >= 3  # the run did map: its kernels were called
    assert late == ["-"], f"compiled during the run: {late}"
