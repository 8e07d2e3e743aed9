"""Peers: other ways to get a trajectory from the same frames, scored by the same evaluation.

Each peer is a frame-to-frame motion estimator (see `loop.MotionEstimator`); `loop.run_peer` reads the
sequence with the project's own readers (same frames, same calibration, same ground truth), chains the
motions into a TUM trajectory and evaluates it exactly as `slam run` does (SE(3) for rgbd / stereo,
Sim(3) for mono). Heavy dependencies are imported only when a peer runs.
"""

from __future__ import annotations

from dataclasses import dataclass


class PeerUnavailable(Exception):
    """The peer cannot run on this machine (a missing optional dependency): its runs are reported as skipped."""


@dataclass(frozen=True)
class PeerInfo:
    name: str
    modes: tuple[str, ...]
    module: str  # defines make_estimator(config, camera, mode) -> MotionEstimator
    description: str


PEERS: dict[str, PeerInfo] = {
    "open3d_rgbd": PeerInfo(
        "open3d_rgbd",
        ("rgbd",),
        "slam.bench.peers.open3d_odometry",
        "Open3D RGB-D odometry (hybrid photometric + geometric term), frame to frame",
    ),
    "orb_pnp": PeerInfo(
        "orb_pnp",
        ("rgbd", "stereo"),
        "slam.bench.peers.orb_pnp",
        "ORB matches to the previous frame's 3-D points (depth map or stereo SGBM), PnP RANSAC",
    ),
}
