"""The synthetic sequence generator: files, determinism, geometric exactness, stereo, features, paths, cache."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import slam.synthetic.writer as writer
from slam.camera import Camera
from slam.errors import SlamInputError
from slam.synthetic import (
    CLEARANCE,
    TRAJECTORIES,
    Renderer,
    build_scene,
    default_cache_dir,
    ensure_sequence,
    is_complete,
    make_trajectory,
    render_sequence,
    synthetic_camera,
)
from slam.synthetic.scene import ROOM_HALF, ROOM_HEIGHT
from slam.trajectory import read_tum

SMALL = {"width": 320, "height": 240}


def inside_room(points: np.ndarray) -> np.ndarray:
    """Whether each point (N, 3) lies strictly inside the room (|x|, |y| < ROOM_HALF, 0 < z < ROOM_HEIGHT)."""
    return np.all(np.abs(points[:, :2]) < ROOM_HALF, axis=1) & (points[:, 2] > 0) & (points[:, 2] < ROOM_HEIGHT)


@pytest.fixture(scope="module")
def orbit_seq(tmp_path_factory) -> Path:
    return render_sequence(tmp_path_factory.mktemp("orbit") / "seq", frames=10, seed=0, **SMALL)


@pytest.fixture(scope="module")
def stereo_seq(tmp_path_factory) -> Path:
    return render_sequence(tmp_path_factory.mktemp("stereo") / "seq", frames=3, seed=2, trajectory="line",
                           stereo=True, **SMALL)


@pytest.fixture(scope="module")
def scene0():
    return build_scene(0)


def _listing(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#")
    return [tuple(line.split()) for line in lines if line and not line.startswith("#")]


def _camera(folder: Path) -> Camera:
    c = yaml.safe_load((folder / "calibration.yaml").read_text())
    return Camera(c["fx"], c["fy"], c["cx"], c["cy"], c["width"], c["height"], c["baseline"])


def _read(folder: Path, stream: str, stamp: str, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imread(str(folder / stream / f"{stamp}.png"), flags)
    assert image is not None
    return image


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    mx = uv[:, 0].astype(np.float32).reshape(-1, 1)
    my = uv[:, 1].astype(np.float32).reshape(-1, 1)
    return cv2.remap(image.astype(np.float32), mx, my, cv2.INTER_LINEAR).ravel()


def _angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    cos = (np.trace(np.swapaxes(Ra, -1, -2) @ Rb, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_files_and_lists_are_consistent(orbit_seq: Path):
    rgb, depth = _listing(orbit_seq / "rgb.txt"), _listing(orbit_seq / "depth.txt")
    assert len(rgb) == len(depth) == 10
    assert [s for s, _ in rgb] == [s for s, _ in depth]
    stamps = np.array([float(s) for s, _ in rgb])
    assert stamps[0] == 0.0
    np.testing.assert_allclose(np.diff(stamps), 1 / 30, atol=1.1e-6)
    for (stamp, name), (_, dname) in zip(rgb, depth, strict=True):
        assert stamp == f"{float(stamp):.6f}"
        assert name == f"rgb/{stamp}.png" and dname == f"depth/{stamp}.png"
    image = _read(orbit_seq, "rgb", rgb[0][0])
    raw = _read(orbit_seq, "depth", rgb[0][0])
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    assert raw.shape == (240, 320) and raw.dtype == np.uint16 and np.all(raw > 0)  # closed room: all valid
    gt = read_tum(orbit_seq / "groundtruth.txt")
    np.testing.assert_array_equal(gt.timestamps, stamps)
    calib = yaml.safe_load((orbit_seq / "calibration.yaml").read_text())
    assert set(calib) == {"fx", "fy", "cx", "cy", "width", "height", "dist", "baseline", "depth_scale"}
    assert (calib["width"], calib["height"], calib["dist"]) == (320, 240, [])
    assert calib["baseline"] == pytest.approx(0.08) and calib["depth_scale"] == 5000
    assert not (orbit_seq / "right.txt").exists()
    assert is_complete(orbit_seq)


def test_output_is_deterministic_per_seed(orbit_seq: Path, tmp_path: Path):
    again = render_sequence(tmp_path / "again", frames=10, seed=0, **SMALL)
    other = render_sequence(tmp_path / "other", frames=10, seed=1, **SMALL)
    files = sorted(p.relative_to(orbit_seq) for p in orbit_seq.rglob("*") if p.is_file())
    assert sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (orbit_seq / rel).read_bytes() == (again / rel).read_bytes(), rel
    for rel in ("rgb/0.000000.png", "depth/0.000000.png", "groundtruth.txt"):
        assert (orbit_seq / rel).read_bytes() != (other / rel).read_bytes(), rel


def test_depth_poses_and_intrinsics_agree_across_frames(orbit_seq: Path):
    """Warp frame A into frame B with A's depth and the ground-truth poses: depths and colours must agree."""
    cam = _camera(orbit_seq)
    gt = read_tum(orbit_seq / "groundtruth.txt")
    a, b = "0.000000", "0.300000"
    T_a, T_b = gt.poses[0], gt.poses[9]
    assert np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]) > 0.1  # the camera really moved
    gray_a = _read(orbit_seq, "rgb", a, cv2.IMREAD_GRAYSCALE)
    gray_b = _read(orbit_seq, "rgb", b, cv2.IMREAD_GRAYSCALE)
    depth_a = _read(orbit_seq, "depth", a).astype(np.float64) / 5000
    depth_b = _read(orbit_seq, "depth", b).astype(np.float64) / 5000
    rows, cols = np.mgrid[4:240:6, 4:320:6]
    uv = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(float)

    def warp(T_b_from_a):
        p_a = cam.unproject(uv, depth_a[uv[:, 1].astype(int), uv[:, 0].astype(int)])
        p_b = p_a @ T_b_from_a[:3, :3].T + T_b_from_a[:3, 3]
        uv_b = cam.project(p_b)
        ok = cam.in_image(uv_b, margin=2)
        return uv[ok], uv_b[ok], p_b[ok, 2]

    # Absolute check: back-projected pixels lie on the scene's surfaces (depth PNG steps are 0.2 mm).
    p_w = cam.unproject(uv, depth_a[uv[:, 1].astype(int), uv[:, 0].astype(int)]) @ T_a[:3, :3].T + T_a[:3, 3]
    off_surface = build_scene(0, textured=False).clearance(p_w)
    assert np.median(off_surface) < 2e-4 and np.percentile(off_surface, 99) < 1e-3
    uv_a, uv_b, z_pred = warp(np.linalg.inv(T_b) @ T_a)
    # Depth is 1/z-affine on planes: interpolate inverse depth, keep points not occluded in B.
    z_b = 1.0 / _bilinear(1.0 / depth_b, uv_b)
    visible = np.abs(z_b - z_pred) < 0.02
    assert visible.mean() > 0.8
    assert np.median(np.abs(z_b - z_pred)[visible]) < 5e-4
    colour_a = gray_a[uv_a[visible, 1].astype(int), uv_a[visible, 0].astype(int)].astype(float)
    photometric = np.abs(_bilinear(gray_b, uv_b[visible]) - colour_a)
    assert np.median(photometric) < 6
    # Control: ignoring the motion breaks the agreement, so the check above has teeth.
    uv_a0, uv_b0, _ = warp(np.eye(4))
    wrong = np.abs(_bilinear(gray_b, uv_b0) - gray_a[uv_a0[:, 1].astype(int), uv_a0[:, 0].astype(int)])
    assert np.median(wrong) > 3 * np.median(photometric) + 5


def test_right_image_is_left_shifted_by_disparity(stereo_seq: Path):
    cam = _camera(stereo_seq)
    assert cam.baseline == pytest.approx(writer.STEREO_BASELINE)
    right_list = _listing(stereo_seq / "right.txt")
    assert [s for s, _ in right_list] == [s for s, _ in _listing(stereo_seq / "rgb.txt")]
    stamp = right_list[1][0]
    left = _read(stereo_seq, "rgb", stamp, cv2.IMREAD_GRAYSCALE)
    right = _read(stereo_seq, "right", stamp, cv2.IMREAD_GRAYSCALE)
    depth = _read(stereo_seq, "depth", stamp).astype(np.float64) / 5000
    rng = np.random.default_rng(0)
    uv = np.stack([rng.integers(40, 300, 2000), rng.integers(5, 235, 2000)], axis=1).astype(float)
    disparity = cam.fx * cam.baseline / depth[uv[:, 1].astype(int), uv[:, 0].astype(int)]
    assert disparity.min() > 1.0  # a real shift, not a copy of the left image
    target = left[uv[:, 1].astype(int), uv[:, 0].astype(int)].astype(float)
    shifted = uv - np.column_stack([disparity, np.zeros(len(uv))])
    err = np.abs(_bilinear(right, shifted) - target)
    assert np.median(err) < 4
    assert np.mean(err < 12) > 0.8  # the rest: occlusion edges
    unshifted = np.abs(_bilinear(right, uv) - target)
    assert np.median(unshifted) > 3 * np.median(err) + 5


def test_orb_finds_many_well_spread_keypoints(scene0):
    camera = synthetic_camera(640, 480)
    renderer = Renderer(scene0, camera)
    orb = cv2.ORB_create(1000)
    stamps = np.array([0.0, 4.0])
    for kind in TRAJECTORIES:
        for T_wc in make_trajectory(kind, stamps, seed=0):
            image, depth = renderer.render(T_wc)
            assert image.shape == (480, 640, 3) and np.all(depth > 0)
            keypoints = orb.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
            assert len(keypoints) >= 800, kind
            pts = np.array([kp.pt for kp in keypoints])
            cells = set(zip((pts[:, 0] // 160).astype(int), (pts[:, 1] // 120).astype(int), strict=True))
            assert len(cells) >= 12, kind


def test_orb_matches_between_frames_are_geometrically_right(scene0):
    """Features are distinctive: ratio-test matches between frames 5 apart land where ground truth says."""
    camera = synthetic_camera(640, 480)
    renderer = Renderer(scene0, camera)
    orb = cv2.ORB_create(1000)
    poses = make_trajectory("orbit", np.round(np.arange(100) / 30.0, 6), seed=0)[[90, 95]]
    (image_a, depth_a), (image_b, _) = (renderer.render(T) for T in poses)
    kp_a, des_a = orb.detectAndCompute(cv2.cvtColor(image_a, cv2.COLOR_BGR2GRAY), None)
    kp_b, des_b = orb.detectAndCompute(cv2.cvtColor(image_b, cv2.COLOR_BGR2GRAY), None)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_a, des_b, k=2)
    matches = [m for m, n in pairs if m.distance < 0.8 * n.distance]
    assert len(matches) >= 300
    uv_a = np.array([kp_a[m.queryIdx].pt for m in matches])
    uv_b = np.array([kp_b[m.trainIdx].pt for m in matches])
    z = depth_a[np.round(uv_a[:, 1]).astype(int), np.round(uv_a[:, 0]).astype(int)]
    T_ba = np.linalg.inv(poses[1]) @ poses[0]
    predicted = camera.project(camera.unproject(uv_a, z) @ T_ba[:3, :3].T + T_ba[:3, 3])
    assert np.mean(np.linalg.norm(predicted - uv_b, axis=1) < 3.0) > 0.9


@pytest.mark.parametrize("kind", TRAJECTORIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trajectories_are_smooth_handheld_and_stay_clear(kind: str, seed: int):
    scene = build_scene(seed, textured=False)
    fps = 30.0
    for frames in (10, 60, 300):
        stamps = np.round(np.arange(frames) / fps, 6)
        poses = make_trajectory(kind, stamps, seed)
        R, p = poses[:, :3, :3], poses[:, :3, 3]
        np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
        speed = np.linalg.norm(np.diff(p, axis=0), axis=1) * fps
        assert speed.max() <= 1.0, (frames, speed.max())
        # A loop closed within under 2 s walks slower (documented): walking pace would need huge accelerations.
        if kind != "loop" or frames >= 60:
            assert speed.mean() >= 0.3, (frames, speed.mean())
        assert (_angle_deg(R[:-1], R[1:]) * fps).max() < 60.0
        # Smooth: accelerations stay those of a walking person (no jumps, no kinks).
        accel = np.linalg.norm(np.diff(p, 2, axis=0), axis=1) * fps**2
        assert accel.max() < 3.0
        assert np.all(inside_room(p))
        assert scene.clearance(p).min() >= CLEARANCE
        # Cameras look sideways or down a little, never at the ceiling or straight down.
        pitch = np.degrees(np.arcsin(R[:, 2, 2]))
        assert np.all((pitch > -35) & (pitch < 10))


def test_trajectories_are_deterministic_per_seed():
    stamps = np.arange(50) / 30.0
    for kind in TRAJECTORIES:
        np.testing.assert_array_equal(make_trajectory(kind, stamps, 3), make_trajectory(kind, stamps, 3))
        assert not np.allclose(make_trajectory(kind, stamps, 3), make_trajectory(kind, stamps, 4))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_turn_walks_ahead_turns_a_right_angle_and_walks_on(seed: int):
    fps = 10.0  # a car's frame rate: the turn is then several degrees per frame
    poses = make_trajectory("turn", np.round(np.arange(100) / fps, 6), seed)
    R, p = poses[:, :3, :3], poses[:, :3, 3]
    forward = R[:, :, 2]  # optical axes in the world
    assert abs(_angle_deg(R[0], R[-1]) - 90.0) < 8.0
    rate = _angle_deg(R[:-1], R[1:]) * fps
    assert rate[:25].max() < 10.0 and rate[-25:].max() < 10.0  # straight legs: only the hand's shake
    assert rate.max() > 35.0  # a sharp turn in the middle
    # It walks where it looks: the first and last legs go along the camera's heading.
    for leg, axis in ((p[20] - p[0], forward[0]), (p[-1] - p[-21], forward[-1])):
        assert np.dot(leg[:2], axis[:2]) / np.linalg.norm(leg[:2]) / np.linalg.norm(axis[:2]) > 0.95


@pytest.mark.parametrize("frames", [10, 120, 300])
def test_loop_returns_to_its_start_after_leaving_it(frames: int):
    poses = make_trajectory("loop", np.round(np.arange(frames) / 30.0, 6), seed=5)
    assert np.linalg.norm(poses[-1, :3, 3] - poses[0, :3, 3]) < 0.3
    assert _angle_deg(poses[0, :3, :3], poses[-1, :3, :3]) < 15
    if frames >= 300:  # long enough to go somewhere else and look elsewhere
        assert np.linalg.norm(poses[:, :3, 3] - poses[0, :3, 3], axis=1).max() > 1.0
        assert _angle_deg(poses[0, :3, :3], poses[:, :3, :3]).max() > 90


def test_ensure_sequence_caches_and_rejects_partial_folders(tmp_path: Path, monkeypatch):
    args = {"frames": 3, "seed": 1, "trajectory": "line", "stereo": False}
    cache = tmp_path / "cache"
    folder = ensure_sequence(cache, width=64, height=48, **args)
    assert folder.parent == cache and is_complete(folder)
    first = folder / "rgb" / "0.000000.png"
    mtime = first.stat().st_mtime_ns

    def must_not_render(*a, **k):
        raise AssertionError("re-rendered a cached sequence")

    with monkeypatch.context() as m:
        m.setattr(writer, "render_sequence", must_not_render)
        assert ensure_sequence(cache, width=64, height=48, **args) == folder
    assert first.stat().st_mtime_ns == mtime
    # Other parameters are another cache entry.
    assert ensure_sequence(cache, width=64, height=48, frames=3, seed=2, trajectory="line") != folder
    # A folder without its completion marker (an interrupted copy, say) is rebuilt, not used.
    (folder / writer.COMPLETE_MARKER).unlink()
    (folder / "stray.txt").write_text("half written")
    stale, fresh = (cache / f".{folder.name}.partial-{n}-0000" for n in (1, 2))
    stale.mkdir()
    fresh.mkdir()  # possibly another process at work: left alone
    os.utime(stale, (0, 0))
    assert ensure_sequence(cache, width=64, height=48, **args) == folder
    assert is_complete(folder) and not (folder / "stray.txt").exists()
    assert not stale.exists() and fresh.exists()


def test_interrupted_render_leaves_nothing_that_looks_complete(tmp_path: Path, monkeypatch):
    calls = {"n": 0}
    real_render = writer.Renderer.render

    def failing_render(self, T_wc):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_render(self, T_wc)

    monkeypatch.setattr(writer.Renderer, "render", failing_render)
    out = tmp_path / "seq"
    with pytest.raises(KeyboardInterrupt):
        render_sequence(out, frames=5, width=64, height=48)
    assert calls["n"] == 3
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_render_refuses_to_overwrite_foreign_folders_and_bad_parameters(tmp_path: Path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SlamInputError, match="refusing"):
        render_sequence(foreign, frames=2, width=64, height=48)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(SlamInputError, match="trajectory"):
        render_sequence(tmp_path / "x", trajectory="spiral")
    with pytest.raises(SlamInputError, match="frames"):
        render_sequence(tmp_path / "x", frames=0)
    assert not (tmp_path / "x").exists()


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "slam" / "synthetic"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the XDG spec says
    assert default_cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "slam" / "synthetic"
