"""The SLAM system: builds the components from a config and owns the mapping thread.

The caller's thread is the tracking thread: it feeds frames to process(); local mapping runs beside it
and a failure there reaches the caller as SlamRuntimeError at the next frame.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from slam import ba_solver, mapping, matching, optimizer
from slam.bundle_adjustment import adjust_whole_map
from slam.camera import Camera
from slam.config import Config
from slam.errors import SlamRuntimeError, describe
from slam.features import create_extractor, level_scales
from slam.frontend import FrameBuilder
from slam.geometry import se3_inverse
from slam.io.base import FrameData
from slam.loop_closing import LoopCloser
from slam.map import Map
from slam.map import warm_up as map_kernels_warm_up
from slam.mapping import LocalMapper
from slam.memory import release_compiler_code, release_free_heap
from slam.place.vocabulary import load_vocabulary
from slam.places import KeyframePlaces
from slam.refinement import refine_pose
from slam.tracking import Tracker, TrackResult
from slam.trajectory import Trajectory


class System:
    def __init__(self, config: Config, camera: Camera, threaded: bool = True, initial_map: Map | None = None,
                 localize_only: bool = False):
        self.config = config
        self.camera = camera
        extractor = create_extractor(config.features)
        scales = level_scales(extractor.scale_factor, extractor.n_levels)
        self.map = initial_map if initial_map is not None else Map(
            extractor.descriptor_size, extractor.descriptor_dtype, extractor.scale_factor, extractor.n_levels,
            recycle=config.mapping.max_keyframes > 0)  # a sliding window: reuse rows
        self.mapper = LocalMapper(config, self.map, camera, scales)
        self.places = _keyframe_places(config, self.map, extractor.descriptor_dtype)
        self.loop_closer = None
        # Monocular maps close Sim(3) loops unless loop_closing.monocular is false: see docs/benchmarks.md.
        if (self.places is not None and config.loop_closing.enabled and config.mapping.max_keyframes == 0
                and (config.mode != "mono" or config.loop_closing.monocular)):
            self.loop_closer = LoopCloser(config, self.map, camera, self.places, self.mapper)
            self.mapper.on_keyframe_done = self.loop_closer.submit
        elif self.places is not None:
            self.mapper.on_keyframe_done = self._index_keyframe
        self.place_recognition_off = _place_recognition_off(config, self.places, self.loop_closer)
        self.tracker = Tracker(config, self.map, self.mapper, scales, self.places)
        if initial_map is not None:
            self._start_from_loaded_map(localize_only)
        self.builder = FrameBuilder(config.mode, camera, extractor)
        # mapping.threaded false: synchronous mapping, so the same input gives the same trajectory
        self.threaded = threaded and config.mapping.enabled and config.mapping.threaded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self._frame_count = 0
        self.last_frame = None  # the frame process() saw last, with its keypoints and matches (for the viewer)

    def warm_up(self) -> None:
        """Load (or compile) every numba kernel the run calls before timing starts: with a warm cache a kernel
        loaded by the run took 2-13 ms of the thread that first called it; on a fresh install, seconds."""
        descriptors = self.map.points.descriptor
        matching.warm_up(descriptors.dtype)
        map_kernels_warm_up(descriptors.shape[1], descriptors.dtype)
        optimizer.warm_up()
        self.builder.warm_up()
        if self.places is not None:
            self.places.vocabulary.words(np.zeros((2, descriptors.shape[1]), descriptors.dtype))
        if self.config.mapping.enabled:
            ba_solver.warm_up()
            mapping.warm_up()
        release_compiler_code()  # the run calls compiled kernels only from here on

    # ---- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> System:
        if self.threaded and self._thread is None:
            self._thread = threading.Thread(target=self._mapping_loop, name="slam-mapping", daemon=True)
            self._thread.start()
            if self.loop_closer is not None:
                self._loop_thread = threading.Thread(target=self._loop_closing_loop, name="slam-loop-closing",
                                                     daemon=True)
                self._loop_thread.start()
        return self

    def _loop_closing_loop(self) -> None:
        _lower_thread_priority(self.config.mapping.thread_niceness)
        try:
            self.loop_closer.run(self._stop)
        except BaseException as exc:  # noqa: BLE001 - reported to the tracking thread
            self.failure = exc

    def _start_from_loaded_map(self, localize_only: bool) -> None:
        """A loaded map: every keyframe is a place to relocalise at; tracking starts lost and finds itself."""
        for kf_id in self.map.alive_keyframe_ids().tolist():
            if self.places is not None:
                self.places.add(kf_id, self.map.keyframes[kf_id].descriptors)
        self.tracker.start_in_map(localize_only)

    def _index_keyframe(self, kf_id: int) -> None:
        """Without loop closing, mapped keyframes still go into place recognition, for relocalisation."""
        with self.map.lock:
            descriptors = self.map.keyframes[kf_id].descriptors
        self.places.add(kf_id, descriptors)

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
        self.last_frame = frame
        result = self.tracker.track(frame)
        if not self.threaded and self.config.mapping.enabled:
            self._map_now()
        elif not self.config.mapping.enabled:
            self.mapper.discard()
        return result

    def _map_now(self) -> None:
        """Synchronous mapping of the keyframes tracking just made. A failure is reported as the thread's
        would be, at the next frame (or shutdown), so the frame just tracked still counts."""
        try:
            self.mapper.drain()
            if self.loop_closer is not None:
                self.loop_closer.drain()
        except Exception as exc:  # noqa: BLE001 - reported by _check_mapping
            self.failure = exc

    def _check_mapping(self) -> None:
        if self.failure is not None:
            exc = self.failure
            where = "mapping thread" if self.threaded else "local mapping"
            raise SlamRuntimeError(f"{where} failed: {describe(exc)}") from exc

    def shutdown(self, finish_mapping: bool = True) -> None:
        """Stop the mapping thread: let it finish queued keyframes first, or abort them."""
        self.builder.close()  # no frame comes after this
        if self._thread is not None:
            if not finish_mapping:
                self._stop.set()
                self.mapper.interrupt()
            self.mapper.queue.put(None)
            self._thread.join(timeout=60.0)
            if self._thread.is_alive():
                raise SlamRuntimeError("the mapping thread did not stop within 60 s")
            self._thread = None
        if self._loop_thread is not None:
            if finish_mapping:
                self.loop_closer.queue.put(None)  # after the keyframes mapping passed on
            else:
                self._stop.set()
                self.loop_closer.queue.put(None)
            self._loop_thread.join(timeout=60.0)
            if self._loop_thread.is_alive():
                raise SlamRuntimeError("the loop-closing thread did not stop within 60 s")
            self._loop_thread = None
        self._check_mapping()
        if finish_mapping and self.config.mapping.enabled and self.config.mapping.final_global_ba:
            release_free_heap()  # before the run's largest allocation, the whole-map BA
            try:
                adjust_whole_map(self.map, self.camera, self.mapper.paused)
            except Exception as exc:
                raise SlamRuntimeError(f"final bundle adjustment failed: {describe(exc)}") from exc

    # ---- results ----------------------------------------------------------------------------------------
    def trajectory(self, refine: bool = False) -> Trajectory:
        """Every tracked frame's pose, through its reference keyframe's current (optimised) pose; with
        `refine`, each then re-fitted to the final map points it matched (see slam.refinement)."""
        records = self.tracker.records
        poses_cw = np.empty((len(records), 4, 4))
        with self.map.lock:
            ref_poses = {k: self.map.keyframe_pose(k) for k in {r.reference_kf for r in records}}
            if refine:
                xyz = self.map.points.xyz[: self.map.points.size].copy()
                resolved = [None if r.observations is None else self.map.resolve_points(r.observations.point_ids)
                            for r in records]
        for i, r in enumerate(records):
            poses_cw[i] = r.T_c_ref @ ref_poses[r.reference_kf]
            if refine and resolved[i] is not None:
                poses_cw[i] = refine_pose(poses_cw[i], r.observations, resolved[i], xyz, self.camera)
        return Trajectory(np.array([r.timestamp for r in records]), se3_inverse(poses_cw))

    def keyframe_trajectory(self) -> Trajectory:
        with self.map.lock:
            kfs = [kf for kf in self.map.keyframes if kf.alive]
            poses = np.array([se3_inverse(self.map.kf_poses[kf.id]) for kf in kfs]).reshape(-1, 4, 4)
        return Trajectory(np.array([kf.timestamp for kf in kfs]), poses)

    def map_points(self) -> tuple[np.ndarray, np.ndarray]:
        with self.map.lock:
            ids = self.map.alive_point_ids()
            return self.map.points.xyz[ids].copy(), self.map.points.color[ids].copy()


def _keyframe_places(config: Config, slam_map: Map, descriptor_dtype) -> KeyframePlaces | None:
    """Place recognition needs a vocabulary of the feature's descriptors: the packaged one is ORB's."""
    path = config.loop_closing.vocabulary
    if path is None and np.dtype(descriptor_dtype) != np.uint8:
        return None
    vocabulary = load_vocabulary(path)
    return KeyframePlaces(vocabulary, is_alive=lambda kf_id: slam_map.keyframes[kf_id].alive)


def _place_recognition_off(config: Config, places: KeyframePlaces | None, loop_closer: LoopCloser | None) -> str:
    """Why loop closing (and relocalisation) will not run although the config asks for it; "" when they run
    as asked. Reported in one line at start-up and in run.json, never switched off silently."""
    if places is None:
        return (f"loop closing and relocalisation are off: no place-recognition vocabulary for "
                f"{config.features.type} descriptors (the packaged one is ORB's; train one with `slam vocab train` "
                f"and set loop_closing.vocabulary)")
    if config.loop_closing.enabled and loop_closer is None and config.mapping.max_keyframes > 0:
        return "loop closing is off: a sliding-window map (mapping.max_keyframes) keeps no loop to close"
    return ""


def _lower_thread_priority(niceness: int) -> None:
    """Let tracking win the CPU when the two threads compete (Linux schedules threads individually)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError:
        pass  # not permitted here: mapping simply runs at the normal priority
