"""Synthetic sequences: a textured room rendered by analytic ray casting, with exact depth and poses.

`render_sequence` writes a TUM RGB-D folder (optionally with a rectified right camera);
`ensure_sequence` returns a cached one, rendering it first if needed (used by `slam demo` and tests).
"""

from slam.synthetic.render import Renderer
from slam.synthetic.scene import CAMERA_ZONE_HI, CAMERA_ZONE_LO, CLEARANCE, Scene, build_scene
from slam.synthetic.trajectories import TRAJECTORIES, make_trajectory
from slam.synthetic.writer import (
    DEPTH_SCALE,
    GENERATOR_VERSION,
    RGBD_BASELINE,
    STEREO_BASELINE,
    default_cache_dir,
    ensure_sequence,
    frame_names,
    is_complete,
    render_sequence,
    synthetic_camera,
)

__all__ = [
    "CAMERA_ZONE_HI", "CAMERA_ZONE_LO", "CLEARANCE", "DEPTH_SCALE", "GENERATOR_VERSION", "RGBD_BASELINE",
    "STEREO_BASELINE", "TRAJECTORIES", "Renderer", "Scene", "build_scene", "default_cache_dir",
    "ensure_sequence", "frame_names", "is_complete", "make_trajectory", "render_sequence", "synthetic_camera",
]
