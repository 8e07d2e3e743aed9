"""The map store: keyframes, points, observations, fusion, culling, covisibility and derived point attributes."""

from __future__ import annotations

import numpy as np
import pytest

from slam.geometry import se3_exp, se3_inverse
from slam.map import KeyFrame, Map


def make_keyframe(n: int = 10, stereo=False, seed: int = 0, octave=None, descriptors=None) -> KeyFrame:
    """A keyframe of n random keypoints; `stereo` (bool or (n,) bool) gives them a right coordinate / depth."""
    rng = np.random.default_rng(seed)
    kp = rng.uniform([0, 0], [640, 480], (n, 2)).astype(np.float32)
    stereo = np.broadcast_to(np.asarray(stereo, dtype=bool), (n,))
    depth = np.where(stereo, 2.0, -1.0)
    u_right = np.where(stereo, kp[:, 0] - 20.0, -1.0)
    return KeyFrame(
        id=-1, frame_id=0, timestamp=0.0, keypoints=kp,
        octave=np.zeros(n, np.int64) if octave is None else np.asarray(octave, np.int64),
        descriptors=rng.integers(0, 256, (n, 32), dtype=np.uint8) if descriptors is None else descriptors,
        u_right=u_right, depth=depth, inv_sigma2=np.ones(n), point_ids=np.full(n, -1, np.int64),
    )


def pose_at(center) -> np.ndarray:
    """T_cw of a camera at `center` looking along world +z."""
    T = np.eye(4)
    T[:3, 3] = -np.asarray(center, dtype=float)
    return T


def new_map(n_keyframes: int, n: int = 10, stereo=False) -> Map:
    m = Map()
    for k in range(n_keyframes):
        m.add_keyframe(make_keyframe(n, stereo, seed=k), pose_at([k, 0, 0]))
    return m


def add_points(m: Map, kf_id: int, kp_idx, xyz=None) -> np.ndarray:
    kp_idx = np.asarray(kp_idx, dtype=np.int64)
    xyz = np.tile([0.0, 0.0, 3.0], (len(kp_idx), 1)) if xyz is None else np.asarray(xyz, float)
    return m.add_points(xyz, m.keyframes[kf_id].descriptors[kp_idx], kf_id, kp_idx)


def observe(m: Map, kf_id: int, kp_idx, pt_ids) -> None:
    kp_idx = np.asarray(kp_idx, dtype=np.int64)
    m.add_observations(np.full(len(kp_idx), kf_id), kp_idx, np.asarray(pt_ids, dtype=np.int64))


def test_points_and_observations_are_mirrored_in_keyframes(check_map):
    m = new_map(2)
    xyz = np.array([[0.0, 0.0, 2.0], [1.0, 0.0, 3.0], [0.0, 1.0, 4.0]])
    ids = add_points(m, 0, [4, 5, 6], xyz)
    observe(m, 1, [0, 1], ids[:2])
    assert ids.tolist() == [0, 1, 2]
    assert m.keyframes[0].point_ids[[4, 5, 6]].tolist() == ids.tolist()
    assert m.keyframes[1].point_ids[[0, 1]].tolist() == ids[:2].tolist()
    assert (m.keyframes[1].point_ids[2:] == -1).all()
    np.testing.assert_array_equal(m.points.xyz[ids], xyz)
    np.testing.assert_array_equal(m.points.descriptor[ids], m.keyframes[0].descriptors[[4, 5, 6]])
    assert (m.points.first_kf[ids] == 0).all() and (m.points.ref_kf[ids] == 0).all()
    kf, kp, pt = m.observations_of_points(ids[:1])
    assert sorted(zip(kf.tolist(), kp.tolist())) == [(0, 4), (1, 0)] and (pt == ids[0]).all()
    assert m.alive_point_ids().tolist() == ids.tolist()
    check_map(m)


def test_point_store_grows_past_its_capacity_keeping_earlier_points(check_map):
    m = Map()
    m.add_keyframe(make_keyframe(3000), np.eye(4))
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(3000, 3))
    first = add_points(m, 0, np.arange(1000), xyz[:1000])
    second = add_points(m, 0, np.arange(1000, 3000), xyz[1000:])
    assert m.points.capacity >= 3000 and m.obs.capacity >= 3000
    np.testing.assert_array_equal(m.points.xyz[np.r_[first, second]], xyz)
    assert len(m.alive_point_ids()) == 3000
    check_map(m)


def test_stereo_observation_counts_twice():
    m = Map()
    m.add_keyframe(make_keyframe(4, stereo=[True, False, True, False]), np.eye(4))
    m.add_keyframe(make_keyframe(4, stereo=False, seed=1), pose_at([1, 0, 0]))
    ids = add_points(m, 0, [0, 1])
    assert m.points.n_obs[ids].tolist() == [2, 1]
    observe(m, 1, [0, 1], ids)
    assert m.points.n_obs[ids].tolist() == [3, 2]


def test_cull_points_removes_their_observations_and_clears_keyframes(check_map):
    m = new_map(2)
    ids = add_points(m, 0, [0, 1, 2])
    observe(m, 1, [3, 4, 5], ids)
    m.cull_points(ids[[0, 2]])
    assert m.alive_point_ids().tolist() == [ids[1]]
    assert m.keyframes[0].point_ids[:3].tolist() == [-1, ids[1], -1]
    assert m.keyframes[1].point_ids[3:6].tolist() == [-1, ids[1], -1]
    assert m.points.n_obs[ids].tolist() == [0, 2, 0]
    kf, _, pt = m.observations_of_points(ids)
    assert (pt == ids[1]).all() and sorted(kf.tolist()) == [0, 1]
    check_map(m)


def test_removing_the_last_observation_kills_the_point(check_map):
    m = new_map(2)
    ids = add_points(m, 0, [0, 1])
    observe(m, 1, [0], ids[:1])
    m.remove_observations(np.array([0, 0]), np.array([0, 1]))
    assert m.points.alive[ids].tolist() == [True, False]  # point 0 is still seen by keyframe 1
    assert m.keyframes[0].point_ids[:2].tolist() == [-1, -1]
    assert m.keyframes[1].point_ids[0] == ids[0]
    check_map(m)


def test_replace_point_moves_observations_without_duplicates(check_map):
    m = new_map(3, stereo=True)
    old = add_points(m, 0, [0])[0]
    new = add_points(m, 0, [1])[0]
    observe(m, 1, [2], [old])
    observe(m, 2, [3], [new])
    m.points.visible[[old, new]] = [5, 7]
    m.points.found[[old, new]] = [2, 3]
    m.replace_point(old, new)
    assert not m.points.alive[old] and m.points.alive[new]
    # Keyframe 0 saw both: its observation of `old` goes, it keeps its own of `new`.
    assert m.keyframes[0].point_ids[:2].tolist() == [-1, new]
    assert m.keyframes[1].point_ids[2] == new
    kf, kp, _ = m.observations_of_points(np.array([new]))
    assert sorted(zip(kf.tolist(), kp.tolist())) == [(0, 1), (1, 2), (2, 3)]
    assert len(m.observations_of_points(np.array([old]))[0]) == 0
    assert m.points.n_obs[new] == 6 and m.points.n_obs[old] == 0
    assert m.points.visible[new] == 12 and m.points.found[new] == 5
    check_map(m)


def test_replace_point_with_itself_or_a_dead_point_changes_nothing(check_map):
    m = new_map(2)
    a, b = add_points(m, 0, [0, 1])
    observe(m, 1, [0], [a])
    m.cull_points(np.array([b]))
    before = m.points.n_obs[: m.points.size].copy()
    m.replace_point(a, a)
    m.replace_point(a, b)
    assert m.points.alive[a] and m.keyframes[1].point_ids[0] == a
    np.testing.assert_array_equal(m.points.n_obs[: m.points.size], before)
    check_map(m)


@pytest.mark.parametrize("recycle", [False, True])
def test_fuse_matches_keeps_the_better_observed_point_and_adds_the_rest(check_map, recycle):
    m = Map(recycle=recycle)
    for k in range(5):
        m.add_keyframe(make_keyframe(10, seed=k), pose_at([k, 0, 0]))
    # Keyframe 0 (the one fused into) has points at keypoints 0 and 1; keypoint 2 has none.
    strong = add_points(m, 0, [0])[0]
    weak = add_points(m, 0, [1])[0]
    observe(m, 1, [0], [strong])
    observe(m, 2, [0], [strong])  # strong: 3 observations
    # Projected points from other keyframes: one seen twice (beats weak), one seen once (loses to strong),
    # one for the empty keypoint, one already dead.
    twice = add_points(m, 3, [1])[0]
    observe(m, 4, [1], [twice])
    once = add_points(m, 3, [2])[0]
    lonely = add_points(m, 4, [3])[0]
    dead = add_points(m, 4, [4])[0]
    m.cull_points(np.array([dead]))
    fused = m.fuse_matches(0, np.array([twice, once, lonely, dead]), np.array([1, 0, 2, 3]))
    assert fused == 2
    assert m.points.alive[[strong, twice, lonely]].all() and not m.points.alive[[weak, once]].any()
    assert m.points.replaced_by[[weak, once]].tolist() == [twice, strong]
    assert m.keyframes[0].point_ids[:4].tolist() == [strong, twice, lonely, -1]
    assert m.keyframes[3].point_ids[[1, 2]].tolist() == [twice, strong]  # keyframe 3's `once` is now `strong`
    assert sorted(m.observations_of_points(np.array([strong]))[0].tolist()) == [0, 1, 2, 3]
    assert sorted(m.observations_of_points(np.array([twice]))[0].tolist()) == [0, 3, 4]
    assert m.points.n_obs[[strong, twice, lonely]].tolist() == [4, 3, 2]
    check_map(m)


def test_fuse_matches_two_points_into_one_keypoint_drops_second_views(check_map):
    m = new_map(3)
    a = add_points(m, 1, [0])[0]
    b = add_points(m, 2, [0])[0]
    c = add_points(m, 0, [5])[0]
    observe(m, 1, [1], [c])  # keyframes 1 and 2 see c besides a and b: their rows of a and b go
    observe(m, 2, [1], [c])
    fused = m.fuse_matches(0, np.array([a, b]), np.array([5, 5]))
    assert fused == 2 and m.points.alive[c] and not m.points.alive[[a, b]].any()
    assert m.keyframes[1].point_ids[:2].tolist() == [-1, c] and m.keyframes[2].point_ids[:2].tolist() == [-1, c]
    assert m.points.n_obs[c] == 3
    check_map(m)


def test_covisibility_counts_shared_points_strongest_first():
    m = new_map(5, n=20)
    ids = add_points(m, 0, np.arange(9))
    observe(m, 2, np.arange(5), ids[:5])  # 5 shared with keyframe 0
    observe(m, 1, np.arange(3), ids[5:8])  # 3 shared
    observe(m, 3, [0], ids[8:9])  # 1 shared
    add_points(m, 4, np.arange(4))  # keyframe 4 shares nothing
    kf_ids, counts = m.covisible(0)
    assert kf_ids.tolist() == [2, 1, 3] and counts.tolist() == [5, 3, 1]
    kf_ids, counts = m.covisible(2)
    assert kf_ids.tolist() == [0] and counts.tolist() == [5]
    assert len(m.covisible(4)[0]) == 0
    kf_ids, counts = m.covisible_with_points(ids, exclude=0, min_weight=3)
    assert kf_ids.tolist() == [2, 1] and counts.tolist() == [5, 3]


def test_seen_elsewhere_counts_other_keyframes_at_the_same_or_a_finer_scale(check_map):
    m = Map()
    for k, octave in enumerate([2, 1, 3, 2, 0]):
        m.add_keyframe(make_keyframe(4, seed=k, octave=np.full(4, octave)), pose_at([k, 0, 0]))
    ids = add_points(m, 0, np.arange(3))  # keyframe 0 sees them at octave 2
    for k in (1, 2, 3):
        observe(m, k, np.arange(2), ids[:2])  # octaves 1, 3, 2
    observe(m, 4, [0], ids[:1])  # octave 0
    counts = m.seen_elsewhere(ids, 0, np.full(3, 2))
    assert counts.tolist() == [3, 2, 0]  # keyframe 2 (octave 3) is coarser; keyframe 0 itself never counts
    assert m.seen_elsewhere(ids, 0, np.array([3, 0, 2])).tolist() == [4, 0, 0]
    m.replace_point(int(ids[1]), int(ids[0]))  # keyframes 1-3 already see ids[0]: their rows of ids[1] go
    assert m.seen_elsewhere(ids[:1], 0, np.full(1, 3)).tolist() == [4]
    assert m.observer_counts(ids).tolist() == [2, 1, 1, 1, 1]  # keyframe 0 sees ids[0] and ids[2]
    check_map(m)


def test_refreshed_covisibility_sees_new_observations():
    m = new_map(3, n=20)
    ids = add_points(m, 0, np.arange(6))
    observe(m, 1, np.arange(2), ids[:2])
    assert m.covisible(0)[0].tolist() == [1]
    observe(m, 2, np.arange(4), ids[2:])
    m.refresh_connections([0])
    kf_ids, counts = m.covisible(0)
    assert kf_ids.tolist() == [2, 1] and counts.tolist() == [4, 2]


def test_culled_keyframe_pose_follows_its_parent(check_map):
    rng = np.random.default_rng(3)
    m = Map()
    poses = [se3_exp(np.r_[rng.normal(0, 0.2, 3), rng.normal(0, 1.0, 3)]) for _ in range(3)]
    for k, T in enumerate(poses):
        m.add_keyframe(make_keyframe(seed=k), T)
    ids = add_points(m, 1, [0, 1])
    observe(m, 0, [0, 1], ids)
    m.cull_keyframe(1, parent=0)
    assert m.alive_keyframe_ids().tolist() == [0, 2]
    np.testing.assert_allclose(m.keyframe_pose(1), poses[1], atol=1e-12)
    assert (m.keyframes[1].point_ids == -1).all() and m.points.alive[ids].all()
    # A correction of the map (a rigid motion S of the world) moves the parent: the culled keyframe follows.
    S = se3_exp(np.array([0.05, -0.02, 0.1, 0.3, 0.1, -0.2]))
    m.kf_poses[0] = poses[0] @ S
    np.testing.assert_allclose(m.keyframe_pose(1), poses[1] @ S, atol=1e-12)
    check_map(m)


def test_culled_keyframes_chain_to_the_nearest_living_ancestor():
    rng = np.random.default_rng(4)
    m = Map()
    poses = [se3_exp(np.r_[rng.normal(0, 0.2, 3), rng.normal(0, 1.0, 3)]) for _ in range(3)]
    for k, T in enumerate(poses):
        m.add_keyframe(make_keyframe(seed=k), T)
    m.cull_keyframe(1, parent=0)
    m.cull_keyframe(2, parent=1)  # parent is itself culled
    np.testing.assert_allclose(m.keyframe_pose(2), poses[2], atol=1e-12)
    S = se3_exp(np.array([-0.1, 0.05, 0.0, 0.0, 0.2, 0.4]))
    m.kf_poses[0] = poses[0] @ S
    np.testing.assert_allclose(m.keyframe_pose(2), poses[2] @ S, atol=1e-12)
    np.testing.assert_allclose(m.keyframe_pose(1), poses[1] @ S, atol=1e-12)
    # The relative pose between the culled keyframes is preserved.
    np.testing.assert_allclose(m.keyframe_pose(2) @ se3_inverse(m.keyframe_pose(1)),
                               poses[2] @ se3_inverse(poses[1]), atol=1e-12)


def test_point_geometry_is_mean_viewing_direction_and_scale_range():
    m = Map(scale_factor=1.2, n_levels=8)
    m.add_keyframe(make_keyframe(4, octave=[2, 0, 0, 0]), pose_at([0, 0, 0]))
    m.add_keyframe(make_keyframe(4, seed=1, octave=[5, 5, 5, 5]), pose_at([1, 0, 0]))
    ids = add_points(m, 0, [0], [[0.5, 0.0, 2.0]])
    observe(m, 1, [0], ids)
    m.update_point_geometry(ids)
    # Rays (0.5, 0, 2) and (-0.5, 0, 2) average to +z.
    np.testing.assert_allclose(m.points.normal[ids[0]], [0.0, 0.0, 1.0], atol=1e-12)
    # Distance range from the reference keyframe (0), which saw the point at octave 2.
    dist = np.hypot(0.5, 2.0)
    assert m.points.max_dist[ids[0]] == pytest.approx(dist * 1.2**2)
    assert m.points.min_dist[ids[0]] == pytest.approx(dist * 1.2**2 / 1.2**7)


def test_point_normal_of_a_single_observation_points_from_the_camera():
    m = Map()
    m.add_keyframe(make_keyframe(4), pose_at([1.0, 2.0, 0.0]))
    ids = add_points(m, 0, [0], [[4.0, 6.0, 0.0]])
    m.update_point_geometry(ids)
    np.testing.assert_allclose(m.points.normal[ids[0]], [0.6, 0.8, 0.0], atol=1e-12)
    assert m.points.max_dist[ids[0]] == pytest.approx(5.0)


def test_point_descriptor_is_the_medoid_of_its_observations():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, 32, dtype=np.uint8)
    near = []
    for bits in (0x01, 0x03, 0x07):  # 1, 2 and 3 flipped bits, each in its own byte
        d = base.copy()
        d[len(near)] ^= bits
        near.append(d)
    far = base ^ 0xFF
    # Distances to the others: base [0,1,2,3,256] (median 2), the near ones have median 3 or 4, far ~255.
    observed = [far, near[0], base, near[2], near[1]]
    m = Map()
    for k, desc in enumerate(observed):
        descriptors = rng.integers(0, 256, (5, 32), dtype=np.uint8)
        descriptors[k] = desc
        m.add_keyframe(make_keyframe(5, seed=k, descriptors=descriptors), pose_at([k, 0, 0]))
    ids = add_points(m, 0, [0])
    for k in range(1, len(observed)):
        observe(m, k, [k], ids)
    np.testing.assert_array_equal(m.points.descriptor[ids[0]], far)  # the creating keyframe's descriptor
    m.update_point_descriptors(ids)
    np.testing.assert_array_equal(m.points.descriptor[ids[0]], base)
