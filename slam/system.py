"""The SLAM system: builds the components from a config and owns the mapping thread.

The caller's thread is the tracking thread: it feeds frames to process(); local mapping runs beside it
and a failure there reaches the caller as SlamRuntimeError at the next frame.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from slam.camera import Camera
from slam.config import Config
from slam.errors import SlamRuntimeError
from slam.features import create_extractor, level_scales
from slam.frontend import FrameBuilder
from slam.geometry import se3_inverse
from slam.io.base import FrameData
from slam.map import Map
from slam.mapping import LocalMapper
from slam.tracking import Tracker, TrackResult
from slam.trajectory import Trajectory


class System:
    def __init__(self, config: Config, camera: Camera, threaded: bool = True):
        self.config = config
        self.camera = camera
        extractor = create_extractor(config.features)
        scales = level_scales(extractor.scale_factor, extractor.n_levels)
        self.map = Map(scale_factor=extractor.scale_factor, n_levels=extractor.n_levels)
        self.mapper = LocalMapper(config, self.map, camera, scales)
        self.tracker = Tracker(config, self.map, self.mapper, scales)
        self.builder = FrameBuilder(config.mode, camera, extractor)
        self.threaded = threaded and config.mapping.enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self._frame_count = 0

    # ---- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> System:
        if self.threaded and self._thread is None:
            self._thread = threading.Thread(target=self._mapping_loop, name="slam-mapping", daemon=True)
            self._thread.start()
        return self

    def _mapping_loop(self) -> None:
        _lower_thread_priority(self.config.mapping.thread_niceness)
        try:
            self.mapper.run(self._stop)
        except BaseException as exc:  # noqa: BLE001 - reported to the tracking thread
            self.failure = exc

    def process(self, data: FrameData) -> TrackResult:
        self._check_mapping()
        frame = self.builder.build(data, self._frame_count)
        self._frame_count += 1
        result = self.tracker.track(frame)
        if not self.threaded and self.config.mapping.enabled:
            self.mapper.drain()
        elif not self.config.mapping.enabled:
            self.mapper.discard()
        return result

    def _check_mapping(self) -> None:
        if self.failure is not None:
            exc = self.failure
            raise SlamRuntimeError(f"mapping thread failed: {type(exc).__name__}: {exc}") from exc

    def shutdown(self, finish_mapping: bool = True) -> None:
        """Stop the mapping thread: let it finish queued keyframes first, or abort them."""
        if self._thread is not None:
            if not finish_mapping:
                self._stop.set()
                self.mapper.interrupt()
            self.mapper.queue.put(None)
            self._thread.join(timeout=60.0)
            self._thread = None
        self._check_mapping()
        if finish_mapping and self.config.mapping.enabled and self.config.mapping.final_global_ba:
            self.mapper.global_bundle_adjustment()

    # ---- results ----------------------------------------------------------------------------------------
    def trajectory(self) -> Trajectory:
        """Every tracked frame's pose, through its reference keyframe's current (optimised) pose."""
        records = self.tracker.records
        poses = np.empty((len(records), 4, 4))
        with self.map.lock:
            ref_poses = {k: self.map.keyframe_pose(k) for k in {r.reference_kf for r in records}}
        for i, r in enumerate(records):
            poses[i] = se3_inverse(r.T_c_ref @ ref_poses[r.reference_kf])
        return Trajectory(np.array([r.timestamp for r in records]), poses)

    def keyframe_trajectory(self) -> Trajectory:
        with self.map.lock:
            kfs = [kf for kf in self.map.keyframes if kf.alive]
            poses = np.array([se3_inverse(self.map.kf_poses[kf.id]) for kf in kfs]).reshape(-1, 4, 4)
        return Trajectory(np.array([kf.timestamp for kf in kfs]), poses)

    def map_points(self) -> tuple[np.ndarray, np.ndarray]:
        with self.map.lock:
            ids = self.map.alive_point_ids()
            return self.map.points.xyz[ids].copy(), self.map.points.color[ids].copy()


def _lower_thread_priority(niceness: int) -> None:
    """Let tracking win the CPU when the two threads compete (Linux schedules threads individually)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError:
        pass  # not permitted here: mapping simply runs at the normal priority
