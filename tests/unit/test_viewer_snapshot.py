"""Snapshots are plain arrays built from the running system; ground truth is placed in the map's frame."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from slam.config import load_config
from slam.geometry import se3_inverse
from slam.io import open_sequence
from slam.system import System
from slam.trajectory import Trajectory
from slam.viewer.align import align_rigid, nearest, umeyama_rigid
from slam.viewer.publisher import SnapshotPublisher
from slam.viewer.snapshot import Snapshot

from .test_system_threads import CONFIG


@pytest.fixture(scope="module")
def tracked(synthetic_rgbd_seq):
    """A threaded system after 30 frames of the synthetic orbit, its publisher and the last result."""
    config = load_config(CONFIG)
    sequence = open_sequence(synthetic_rgbd_seq, config)
    system = System(config, sequence.camera, threaded=True).start()
    publisher = SnapshotPublisher(system, sequence.camera, sequence.groundtruth, every_frames=1)
    results = []
    for data in sequence.frames(30):
        results.append(system.process(data))
        publisher.observe(data, results[-1])
    snapshot = publisher.build()
    yield system, publisher, results, snapshot, sequence
    system.shutdown(finish_mapping=False)


def test_snapshot_fields_are_plain_values_and_arrays(tracked):
    *_, snapshot, _ = tracked
    for f in dataclasses.fields(Snapshot):
        value = getattr(snapshot, f.name)
        assert value is None or isinstance(value, (np.ndarray, int, float, str, bool)), f.name
        if isinstance(value, np.ndarray):
            assert value.dtype != object, f.name
    data = pickle.dumps(snapshot)
    assert b"open3d" not in data and b"slam.map" not in data  # nothing but numpy and the dataclass
    back = pickle.loads(data)
    for f in dataclasses.fields(Snapshot):
        np.testing.assert_array_equal(getattr(back, f.name), getattr(snapshot, f.name))


def test_snapshot_holds_the_system_state(tracked):
    system, publisher, results, snapshot, _ = tracked
    assert [r.state.value for r in results] == ["ok"] * 30
    assert snapshot.frame_index == 29 and snapshot.n_frames == 30 and snapshot.state == "ok"
    assert len(snapshot.trajectory) == 30
    np.testing.assert_allclose(snapshot.current_pose, se3_inverse(results[-1].T_cw))
    np.testing.assert_allclose(snapshot.trajectory[-1], snapshot.current_pose[:3, 3])
    assert snapshot.n_keyframes >= 2 and snapshot.n_points > 500
    assert snapshot.points.dtype == np.float32 and snapshot.colors.dtype == np.uint8
    assert snapshot.colors.std() > 10  # image colours, not a constant
    frame = system.last_frame
    np.testing.assert_array_equal(snapshot.keypoints, frame.keypoints.astype(np.float32))
    assert snapshot.inliers.sum() >= results[-1].n_inliers > 100
    assert not (snapshot.inliers & snapshot.outliers).any()
    assert snapshot.image.shape == (480, 640, 3)


def test_live_ground_truth_starts_on_the_trajectory(tracked):
    *_, snapshot, sequence = tracked
    q, g = nearest(sequence.groundtruth.timestamps, sequence.timestamps[:30])
    assert len(q) == 30
    gap = np.linalg.norm(snapshot.groundtruth[g] - snapshot.trajectory[q], axis=1)
    assert gap[0] < 1e-6  # the first frame defines the alignment
    assert gap.max() < 0.02  # exact synthetic ground truth: only tracking error remains


def test_final_snapshot_uses_the_adjusted_trajectory(tracked):
    system, publisher, _, _, _ = tracked
    final = publisher.final()
    trajectory = system.trajectory()
    assert final.final and final.image is None
    np.testing.assert_allclose(final.trajectory, trajectory.positions)
    q, g = nearest(publisher.groundtruth.timestamps, trajectory.timestamps)
    assert np.linalg.norm(final.groundtruth[g] - trajectory.positions[q], axis=1).max() < 0.02


def test_rigid_fit_recovers_a_known_motion():
    rng = np.random.default_rng(4)
    src = rng.normal(size=(50, 3))
    angle = 0.7
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([0.3, -1.0, 2.0])
    R_est, t_est = umeyama_rigid(src, src @ R.T + t)
    np.testing.assert_allclose(R_est, R, atol=1e-9)
    np.testing.assert_allclose(t_est, t, atol=1e-9)


def test_ground_truth_association_and_too_little_overlap():
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, 0, 3] = np.arange(5.0)
    poses[:, 1, 3] = np.arange(5.0) ** 2
    gt = Trajectory(np.arange(5) * 0.1, poses)
    q, g = nearest(gt.timestamps, np.array([0.005, 0.2, 0.33, 0.41]))
    np.testing.assert_array_equal(q, [0, 1, 3])  # 0.33 is 0.03 s from its nearest pose: not associated
    np.testing.assert_array_equal(g, [0, 2, 4])
    assert align_rigid(gt, np.array([0.0, 0.1]), np.zeros((2, 3))) is None
