"""Rendering a snapshot: the pixels show the trajectory, frustums and points where the view projects them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slam.config import load_config
from slam.io import open_sequence
from slam.system import System
from slam.viewer.overlay import INLIER_BGR, OUTLIER_BGR, annotate, status_lines
from slam.viewer.publisher import SnapshotPublisher
from slam.viewer.raster import RasterRenderer
from slam.viewer.record import FRAME_SIZE, make_renderer, write_frame
from slam.viewer.scene import KEYFRAME_RGB, TRAJECTORY_RGB, build_scene, overview_view
from slam.viewer.snapshot import Snapshot
from slam.viewer.view import look_at
from tests.unit.viewer_checks import points_check, stray_share, trajectory_check

from .test_system_threads import CONFIG

SIZE = (640, 480)


def camera_looking_at(centre: np.ndarray, position: np.ndarray) -> np.ndarray:
    """T_wc of a level camera (y down) at `position` looking at `centre`."""
    z = (centre - position) / np.linalg.norm(centre - position)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    T[:3, 3] = position
    return T


def orbit_snapshot(seed: int = 0) -> Snapshot:
    """Cameras on three quarters of a circle at head height looking at its centre, points on the floor below."""
    rng = np.random.default_rng(seed)
    angle = np.linspace(0.0, 1.5 * np.pi, 120)
    trajectory = np.stack([1.5 * np.sin(angle), np.zeros_like(angle), 1.5 - 1.5 * np.cos(angle)], axis=1)
    centre = np.array([0.0, 0.0, 1.5])
    poses = np.array([camera_looking_at(centre, p) for p in trajectory])
    points = np.stack([rng.uniform(-2.5, 2.5, 400), np.full(400, 1.2), rng.uniform(-1.0, 4.0, 400)], axis=1)
    colors = rng.integers(60, 200, (400, 3)).astype(np.uint8)  # never the trajectory's orange
    colors[:, 2] = 200
    return Snapshot(
        frame_index=119,
        state="ok",
        keyframe_poses=poses[::20],
        trajectory=trajectory,
        points=points.astype(np.float32),
        colors=colors,
        current_pose=poses[-1],
        intrinsics=np.array([500.0, 500.0, 319.5, 239.5, 640, 480]),
    )


def test_view_camera_conventions():
    view = look_at(np.array([0.0, -2.0, -4.0]), np.zeros(3), np.array([0.0, -1.0, 0.0]), 640, 480)
    uv, z = view.project(np.array([[0.0, 0.0, 0.0], [0.0, -0.5, 0.0], [0.5, 0.0, 0.0]]))
    np.testing.assert_allclose(uv[0], [319.5, 239.5], atol=1e-9)  # the target is in the middle
    assert uv[1, 1] < uv[0, 1] - 10  # world up (-y) is up in the image
    assert uv[2, 0] > uv[0, 0] + 10  # world +x is to the right, seen from behind (-z)
    assert (z > 0).all() and z[0] == pytest.approx(np.hypot(2.0, 4.0))


def check_render(image: np.ndarray, snapshot: Snapshot, view) -> None:
    covered, on_line = trajectory_check(image, view, snapshot.trajectory, TRAJECTORY_RGB)
    assert covered > 0.9, f"only {covered:.0%} of the projected trajectory is drawn in its colour"
    assert on_line > 0.9, f"{1 - on_line:.0%} of the trajectory-coloured pixels lie away from its projection"
    assert points_check(image, view, snapshot.points) > 0.9
    assert stray_share(image, view, build_scene(snapshot)) < 0.01
    keyframe_pixels = np.abs(image.astype(int) - np.round(KEYFRAME_RGB * 255)).max(axis=2) <= 40
    assert keyframe_pixels.sum() > 200  # the frustums are drawn too


def test_numpy_renderer_draws_what_the_view_projects():
    snapshot = orbit_snapshot()
    view = overview_view(snapshot, *SIZE)
    check_render(RasterRenderer().render(build_scene(snapshot), view), snapshot, view)


def test_open3d_renderer_draws_what_the_view_projects():
    pytest.importorskip("open3d")
    from slam.viewer.o3d_scene import OffscreenRenderer

    snapshot = orbit_snapshot()
    view = overview_view(snapshot, *SIZE)
    renderer = OffscreenRenderer(*SIZE)
    try:
        check_render(renderer.render(build_scene(snapshot), view), snapshot, view)
        grown = orbit_snapshot(seed=1)  # a second, wider scene through the same window is not clipped
        grown.points = grown.points * np.array([2.0, 1.0, 2.0], np.float32)
        wide = overview_view(grown, *SIZE)
        check_render(renderer.render(build_scene(grown), wide), grown, wide)
    finally:
        renderer.close()


def test_the_camera_image_marks_inliers_and_outliers():
    rng = np.random.default_rng(3)
    keypoints = np.stack([rng.uniform(20, 620, 60), rng.uniform(60, 460, 60)], axis=1).astype(np.float32)
    inliers, outliers = np.arange(60) % 3 == 0, np.arange(60) % 3 == 1
    snapshot = Snapshot(
        frame_index=7,
        state="ok",
        image=np.full((480, 640), 128, np.uint8),
        keypoints=keypoints,
        inliers=inliers,
        outliers=outliers,
        fps=29.5,
    )
    image = annotate(snapshot)
    for mask, color in ((inliers, INLIER_BGR), (outliers, OUTLIER_BGR)):
        ring = np.all(image == color, axis=2)
        hits = [
            ring[int(round(v)) - 4 : int(round(v)) + 5, int(round(u)) - 4 : int(round(u)) + 5].any()
            for u, v in keypoints[mask]
        ]
        assert np.mean(hits) > 0.9
        assert ring.sum() < 60 * mask.sum()  # rings around those keypoints, not colour everywhere
    assert status_lines(snapshot) == ("OK  frame 7  29.5 fps", "inliers 20  outliers 20  keyframes 0  points 0")


@pytest.mark.timeout(120)
def test_recorded_frame_of_a_real_run(synthetic_rgbd_seq, tmp_path):
    config = load_config(CONFIG)
    sequence = open_sequence(synthetic_rgbd_seq, config)
    system = System(config, sequence.camera, threaded=False)
    publisher = SnapshotPublisher(system, sequence.camera, sequence.groundtruth, every_frames=1)
    for data in sequence.frames(25):
        publisher.observe(data, system.process(data))
    snapshot = publisher.build()
    renderer = make_renderer(*FRAME_SIZE)
    try:
        path = write_frame(snapshot, tmp_path, renderer)
    finally:
        renderer.close()
    assert path == tmp_path / "frames" / "000024.png"
    frame = cv2.imread(str(path))
    assert frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0] + 800, 3)  # the 640x480 image scaled to 800x600 beside
    left = cv2.cvtColor(frame[:, : FRAME_SIZE[0]], cv2.COLOR_BGR2RGB)
    view = overview_view(snapshot, *FRAME_SIZE)
    covered, on_line = trajectory_check(left, view, snapshot.trajectory, TRAJECTORY_RGB)
    assert covered > 0.8 and on_line > 0.8
    assert points_check(left, view, snapshot.points) > 0.8
    right = frame[:, FRAME_SIZE[0] :]
    inlier_pixels = np.all(np.abs(right.astype(int) - INLIER_BGR) <= 30, axis=2)
    assert inlier_pixels.sum() > 500  # hundreds of tracked features ringed on the image
