"""`--viewer live`: an open3d window (map, keyframes, trajectory, current camera, ground truth) and an
OpenCV window (current image with its features and the counts), in the viewer process.

Keys in either window: space pauses / resumes the run, f toggles following the camera, q ends the run
(outputs are written). Closing the map window only closes the viewer; the run goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass

import cv2

from slam.viewer.channel import take_all
from slam.viewer.overlay import annotate
from slam.viewer.record import VIEWER_NICENESS
from slam.viewer.scene import build_scene, follow_view, overview_view
from slam.viewer.snapshot import Snapshot

MAP_SIZE = (1024, 768)
CAMERA_WINDOW = "slam: camera"
QUIT_KEYS = (ord("q"), ord("Q"))
PAUSE_KEYS = (ord(" "),)
FOLLOW_KEYS = (ord("f"), ord("F"))
_POLL_S = 0.02  # the windows are redrawn (and keys read) about 50 times a second


@dataclass
class KeyActions:
    """What the keys change: the run (through `controls`, when there is a run) and the view."""

    controls: object | None = None  # slam.viewer.session.Controls
    follow: bool = True
    closed: bool = False

    def press(self, key: int) -> None:
        if key in QUIT_KEYS:
            self.closed = True
            if self.controls is not None:
                self.controls.quit.set()
        elif key in PAUSE_KEYS and self.controls is not None:
            if self.controls.pause.is_set():
                self.controls.pause.clear()
            else:
                self.controls.pause.set()
        elif key in FOLLOW_KEYS:
            self.follow = not self.follow

    def note(self, snapshot: Snapshot) -> str:
        words = ["finished" if snapshot.final else ""]
        if self.controls is not None and self.controls.pause.is_set():
            words.append("PAUSED")
        words.append("follow" if self.follow else "free view")
        return "  ".join(w for w in words if w)


class LiveWindows:
    def __init__(self, actions: KeyActions, title: str = "slam", camera: bool = True):
        from slam.viewer.o3d_scene import O3DScene, import_open3d, style

        o3d = import_open3d()
        self.actions = actions
        self.vis = o3d.visualization.VisualizerWithKeyCallback()
        if not self.vis.create_window(f"{title}: map (space pause, f follow, q quit)", *MAP_SIZE):
            raise RuntimeError("open3d could not open a window")
        style(self.vis)
        for key in (ord("Q"), ord(" "), ord("F")):  # open3d reports letters in upper case
            self.vis.register_key_callback(key, lambda _vis, k=key: self._key(k))
        self.scene = O3DScene(o3d)
        self.camera = camera
        self.snapshot: Snapshot | None = None
        self._framed = False
        self._placed = False

    def _key(self, key: int) -> bool:
        self.actions.press(key)
        return False

    def show(self, snapshot: Snapshot) -> None:
        width, height = self._size()
        view = follow_view(snapshot, width, height) if self.actions.follow else None
        if view is None and not self._framed:
            view = overview_view(snapshot, width, height)
        self.scene.show(self.vis, build_scene(snapshot), view)
        self._framed = True
        self.snapshot = snapshot

    def pump(self) -> bool:
        """Redraw and read keys; False once the map window was closed."""
        open_ = self.vis.poll_events()
        self.vis.update_renderer()
        if self.camera and self.snapshot is not None:
            cv2.imshow(CAMERA_WINDOW, annotate(self.snapshot, self.actions.note(self.snapshot)))
            if not self._placed:  # beside the map window rather than on top of it
                cv2.moveWindow(CAMERA_WINDOW, MAP_SIZE[0] + 10, 0)
                self._placed = True
            key = cv2.waitKey(1)
            if key >= 0:
                self.actions.press(key & 0xFF)
        return open_ and not self.actions.closed

    def close(self) -> None:
        self.vis.destroy_window()
        if self.camera:
            cv2.destroyAllWindows()

    def _size(self) -> tuple[int, int]:
        intrinsic = self.vis.get_view_control().convert_to_pinhole_camera_parameters().intrinsic
        return intrinsic.width, intrinsic.height


def run_process(queue, controls, settings) -> None:
    """The live viewer process: show the newest snapshot until q, the window closes or the run's process ends."""
    os.nice(VIEWER_NICENESS)  # a busy window must not take the CPU from tracking
    actions = KeyActions(controls)
    windows = LiveWindows(actions)
    parent = multiprocessing.parent_process()
    try:
        while parent is None or parent.is_alive() or (windows.snapshot is not None and windows.snapshot.final):
            items = take_all(queue, _POLL_S)
            if items:
                windows.show(items[-1])
            if not windows.pump():
                return
    finally:
        windows.close()


def show_run(snapshot: Snapshot, title: str) -> None:
    """`slam view`: one finished run until its window is closed (or q)."""
    windows = LiveWindows(KeyActions(follow=False), title=title, camera=False)
    try:
        windows.show(snapshot)
        while windows.pump():
            time.sleep(_POLL_S)
    finally:
        windows.close()
