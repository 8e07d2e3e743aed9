"""Final pose refinement: every tracked frame re-estimated against the finished, bundle-adjusted map.

During tracking a frame's pose is fitted to the map as it was then; bundle adjustment and fusion improve
the points afterwards (for monocular maps they also change the local scale, which a pose stored relative
to its keyframe cannot follow). A motion-only optimisation of each frame against its own matches, now
with the final points, gives the best pose the map supports. Frames with too few surviving matches keep
their keyframe-relative pose.
"""

from __future__ import annotations

import numpy as np

from slam.camera import Camera
from slam.optimizer import optimize_pose
from slam.tracking import FrameObservations

MIN_MATCHES = 20
MIN_INLIER_RATIO = 0.5


def refine_pose(T_cw: np.ndarray, obs: FrameObservations, resolved_ids: np.ndarray, points_xyz: np.ndarray,
                camera: Camera) -> np.ndarray:
    """The frame's pose against the final points it matched; T_cw unchanged when the evidence is thin."""
    keep = resolved_ids >= 0
    if np.count_nonzero(keep) < MIN_MATCHES:
        return T_cw
    result = optimize_pose(T_cw, points_xyz[resolved_ids[keep]], obs.uv[keep].astype(np.float64),
                           obs.u_right[keep].astype(np.float64), obs.inv_sigma2[keep].astype(np.float64), camera)
    if result.n_inliers < max(MIN_MATCHES, MIN_INLIER_RATIO * np.count_nonzero(keep)):
        return T_cw
    return result.T_cw
