"""Drawing a Scene with open3d's legacy Visualizer: a visible window (live) or a hidden one (recording).

The hidden window renders without a display (open3d falls back to EGL with Mesa's software renderer).
Geometries are re-added on every update: the Visualizer sets its clipping planes from the bounding box of
what was added, so a map that grew after being added would otherwise be cut off.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from slam.viewer.raster import LINE_WIDTH, POINT_SIZE
from slam.viewer.scene import BACKGROUND_RGB, Scene
from slam.viewer.view import ViewCamera


def import_open3d():
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


class O3DScene:
    """A point cloud and a line set kept across updates of one Visualizer."""

    def __init__(self, o3d):
        self.o3d = o3d
        self.cloud = o3d.geometry.PointCloud()
        self.lines = o3d.geometry.LineSet()

    def show(self, vis, scene: Scene, view: ViewCamera | None) -> None:
        """Draw `scene` seen from `view` (None: keep the viewpoint the user has)."""
        o3d = self.o3d
        control = vis.get_view_control()
        kept = None if view is not None else control.convert_to_pinhole_camera_parameters()
        self.cloud.points = o3d.utility.Vector3dVector(np.asarray(scene.points, float).reshape(-1, 3))
        self.cloud.colors = o3d.utility.Vector3dVector(np.asarray(scene.point_colors, float).reshape(-1, 3))
        self.lines.points = o3d.utility.Vector3dVector(scene.segments.reshape(-1, 3))
        self.lines.lines = o3d.utility.Vector2iVector(np.arange(2 * len(scene.segments)).reshape(-1, 2))
        self.lines.colors = o3d.utility.Vector3dVector(scene.segment_colors)
        vis.clear_geometries()
        for geometry in (self.cloud, self.lines):
            if geometry.has_points():
                vis.add_geometry(geometry)
        control.convert_from_pinhole_camera_parameters(
            kept if kept is not None else pinhole(o3d, view), allow_arbitrary=True
        )


def style(vis) -> None:
    option = vis.get_render_option()
    option.point_size = float(POINT_SIZE)
    option.line_width = float(LINE_WIDTH)
    option.background_color = BACKGROUND_RGB
    option.light_on = False  # colours as measured in the images, not shaded


def pinhole(o3d, view: ViewCamera):
    params = o3d.camera.PinholeCameraParameters()
    K = view.K
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(view.width, view.height, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    params.extrinsic = view.T_cw
    return params


class OffscreenRenderer:
    """open3d's legacy Visualizer in a hidden window of a fixed size."""

    name = "open3d"

    def __init__(self, width: int, height: int):
        self.o3d = import_open3d()
        self.width, self.height = width, height
        self.vis = self.o3d.visualization.Visualizer()
        with _quiet_stderr():  # GLFW probing for Wayland without a display prints a harmless error line
            created = self.vis.create_window(visible=False, width=width, height=height)
        if not created:
            raise RuntimeError("open3d could not create an off-screen window")
        style(self.vis)
        self.scene = O3DScene(self.o3d)

    def render(self, scene: Scene, view: ViewCamera) -> np.ndarray:
        """(H,W,3) uint8 RGB."""
        if (view.width, view.height) != (self.width, self.height):
            raise ValueError(f"this renderer draws {self.width}x{self.height}, asked {view.width}x{view.height}")
        self.scene.show(self.vis, scene, view)
        self.vis.poll_events()
        self.vis.update_renderer()
        buffer = np.asarray(self.vis.capture_screen_float_buffer(do_render=True))
        return np.round(np.clip(buffer, 0.0, 1.0) * 255).astype(np.uint8)

    def close(self) -> None:
        self.vis.destroy_window()


@contextlib.contextmanager
def _quiet_stderr():
    """Native libraries write to file descriptor 2 directly, so redirect that, not sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
