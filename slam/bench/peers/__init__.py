"""Peers: other ways to get a trajectory from the same frames, scored by the same evaluation.

A peer is a frame-to-frame motion estimator (see `loop.MotionEstimator`) or a whole SLAM system (see
`loop.SlamSystem`); `loop.run_peer` reads the sequence with the project's own readers (same frames, same
calibration, same ground truth), feeds it at the recorded rate, gets a TUM trajectory (chained motions, or
the system's own) and evaluates it exactly as `slam run` does (SE(3) for rgbd / stereo, Sim(3) for mono).
Heavy dependencies are imported only when a peer runs; ORB-SLAM3 (GPLv3) is never imported at all: it
runs in a process of its own, under a Python of its own (see `orbslam3`).
"""

from __future__ import annotations

from dataclasses import dataclass


class PeerUnavailable(Exception):
    """The peer cannot run on this machine (a missing optional dependency): its runs are reported as skipped."""


@dataclass(frozen=True)
class PeerInfo:
    name: str
    modes: tuple[str, ...]
    # defines make_estimator(config, camera, mode) -> MotionEstimator,
    # or make_system(config, sequence, out_dir) -> SlamSystem
    module: str
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
    "orbslam3": PeerInfo(
        "orbslam3",
        ("rgbd", "stereo", "mono"),
        "slam.bench.peers.orbslam3",
        "ORB-SLAM3 v1.0 (pyorbslam3 wheel, GPLv3), the whole system, in its own process and venv "
        "(`slam install-orbslam3`)",
    ),
}
