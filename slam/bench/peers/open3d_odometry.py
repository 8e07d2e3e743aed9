"""Peer: Open3D's RGB-D odometry between consecutive frames, with Open3D's default options.

Open3D is optional (the `viewer` extra); without it the peer's runs are reported as skipped.
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.bench.peers import PeerUnavailable
from slam.camera import Camera
from slam.config import Config
from slam.errors import describe
from slam.io import FrameData


def make_estimator(config: Config, camera: Camera, mode: str) -> Open3dRgbdOdometry:
    if mode != "rgbd":
        raise PeerUnavailable(f"Open3D RGB-D odometry needs depth maps (mode rgbd), not mode {mode}")
    try:
        import open3d
    except Exception as exc:  # noqa: BLE001 - ImportError, or a missing system library (OSError)
        raise PeerUnavailable(f"open3d cannot be imported ({describe(exc)}); install the 'viewer' extra") from None
    return Open3dRgbdOdometry(open3d, camera)


class Open3dRgbdOdometry:
    def __init__(self, o3d, camera: Camera):
        self.o3d = o3d
        self.intrinsic = o3d.camera.PinholeCameraIntrinsic(
            camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy
        )
        self.option = o3d.pipelines.odometry.OdometryOption()
        self.jacobian = o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm()
        self.previous = None
        self.motion = np.eye(4)  # the last motion: the initial guess for the next one

    def step(self, frame: FrameData) -> np.ndarray | None:
        current = self._rgbd(frame)
        previous, self.previous = self.previous, current
        if previous is None:
            return np.eye(4)
        # Open3D's result maps source (current) points into the target (previous) camera: T_prev_cur.
        ok, motion, _ = self.o3d.pipelines.odometry.compute_rgbd_odometry(
            current, previous, self.intrinsic, self.motion, self.jacobian, self.option
        )
        if not ok:
            return None
        self.motion = np.asarray(motion)
        return self.motion

    def _rgbd(self, frame: FrameData):
        if frame.depth is None:
            raise PeerUnavailable(f"{frame.path}: no depth map")
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB if frame.image.ndim == 3 else cv2.COLOR_GRAY2RGB)
        color = self.o3d.geometry.Image(np.ascontiguousarray(rgb))
        depth = self.o3d.geometry.Image(np.ascontiguousarray(frame.depth, dtype=np.float32))
        return self.o3d.geometry.RGBDImage.create_from_color_and_depth(color, depth, depth_scale=1.0)
