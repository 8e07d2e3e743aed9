"""Peer: frame-to-frame ORB + PnP, the textbook visual odometry baseline (OpenCV only).

Each frame's ORB keypoints get a depth (the RGB-D depth map, or a stereo SGBM disparity map); the next
frame's keypoints are matched to them (brute force, Hamming, cross-checked) and PnP RANSAC (USAC MAGSAC++)
gives the motion, refined by Levenberg-Marquardt on the inliers. No map, no keyframes, no bundle adjustment.
Only points closer than camera.depth_threshold baselines are used (our system's "close" points): farther
stereo depth is too noisy for PnP.
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.bench.peers import PeerUnavailable
from slam.camera import Camera
from slam.config import Config
from slam.io import FrameData

_SGBM_BLOCK = 7


def make_estimator(config: Config, camera: Camera, mode: str) -> OrbPnp:
    if mode not in ("rgbd", "stereo"):
        raise PeerUnavailable(f"ORB + PnP needs depth (mode rgbd or stereo), not mode {mode}")
    if not camera.baseline > 0:
        raise PeerUnavailable("ORB + PnP needs a (virtual) baseline to bound the depth of usable points")
    return OrbPnp(config, camera, mode)


class OrbPnp:
    def __init__(self, config: Config, camera: Camera, mode: str):
        f = config.features
        self.orb = cv2.ORB_create(
            nfeatures=f.n_features, scaleFactor=f.scale_factor, nlevels=f.n_levels, fastThreshold=f.fast_threshold
        )
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self.camera = camera
        self.max_depth = config.camera.depth_threshold * camera.baseline
        self.pnp_threshold = config.estimation.pnp_threshold_px
        # Fewer PnP inliers than our tracker needs to call a frame tracked: the motion is not trusted (measured
        # on KITTI 06: a 19-inlier solution was 1.4 m off; the loop then keeps the last motion).
        self.min_inliers = config.tracking.min_tracked_points
        self.sgbm = _sgbm() if mode == "stereo" else None
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # 3-D points (N,3), descriptors (N,32)

    def step(self, frame: FrameData) -> np.ndarray | None:
        keypoints, descriptors = self.orb.detectAndCompute(frame.gray, None)
        uv = np.array([kp.pt for kp in keypoints], dtype=np.float64).reshape(-1, 2)
        previous = self.previous
        self.previous = self._points(uv, descriptors, self._depth(frame))
        if previous is None:
            return np.eye(4)
        if descriptors is None or len(previous[0]) < self.min_inliers:
            return None
        return self._motion(previous, uv, descriptors)

    def _motion(
        self, previous: tuple[np.ndarray, np.ndarray], uv: np.ndarray, descriptors: np.ndarray
    ) -> np.ndarray | None:
        points, prev_descriptors = previous
        matches = self.matcher.match(prev_descriptors, descriptors)
        if len(matches) < self.min_inliers:
            return None
        obj = points[[m.queryIdx for m in matches]]
        img = uv[[m.trainIdx for m in matches]]
        K = self.camera.K
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            obj,
            img,
            K,
            None,
            reprojectionError=self.pnp_threshold,
            confidence=0.999,
            iterationsCount=1000,
            flags=cv2.USAC_MAGSAC,
        )
        if not ok or inliers is None or len(inliers) < self.min_inliers:
            return None
        inliers = inliers.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(obj[inliers], img[inliers], K, None, rvec, tvec)
        T_cur_prev = np.eye(4)
        T_cur_prev[:3, :3] = cv2.Rodrigues(rvec)[0]
        T_cur_prev[:3, 3] = tvec.ravel()
        return np.linalg.inv(T_cur_prev)

    def _depth(self, frame: FrameData) -> np.ndarray:
        if self.sgbm is None:
            if frame.depth is None:
                raise PeerUnavailable(f"{frame.path}: no depth map")
            return frame.depth
        if frame.right is None:
            raise PeerUnavailable(f"{frame.path}: no right image")
        disparity = self.sgbm.compute(frame.gray, frame.right).astype(np.float32) / 16.0
        with np.errstate(divide="ignore"):
            return np.where(disparity > 0.5, self.camera.bf / disparity, 0.0).astype(np.float32)

    def _points(
        self, uv: np.ndarray, descriptors: np.ndarray | None, depth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The keypoints with a usable depth, as camera-frame 3-D points, with their descriptors."""
        if descriptors is None or len(uv) == 0:
            return np.zeros((0, 3)), np.zeros((0, 32), dtype=np.uint8)
        cols = np.clip(np.round(uv[:, 0]).astype(int), 0, depth.shape[1] - 1)
        rows = np.clip(np.round(uv[:, 1]).astype(int), 0, depth.shape[0] - 1)
        z = depth[rows, cols].astype(np.float64)
        keep = np.isfinite(z) & (z > 0) & (z < self.max_depth)
        return self.camera.unproject(uv[keep], z[keep]), descriptors[keep]


def _sgbm():
    block = _SGBM_BLOCK
    return cv2.StereoSGBM_create(
        minDisparity=0,
        numDisparities=128,
        blockSize=block,
        P1=8 * block * block,
        P2=32 * block * block,
        disp12MaxDiff=1,
        uniquenessRatio=10,
        speckleWindowSize=100,
        speckleRange=2,
    )
