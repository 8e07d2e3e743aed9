"""Smooth handheld-like camera paths in the synthetic room, as camera-to-world poses T_wc.

Every path is a sum of sinusoids in position and in (yaw, pitch, roll), so it is C-infinity (C2 as
asked), stays inside CAMERA_ZONE (hence >= CLEARANCE from every surface) and keeps the camera level
enough to look at walls, boxes and floor rather than at the ceiling. Camera axes: x right, y down,
z forward (OpenCV); world z is up.
"""

from __future__ import annotations

import numpy as np

from slam.synthetic.scene import CAMERA_ZONE_HI, CAMERA_ZONE_LO

TRAJECTORIES = ("orbit", "loop", "line", "turn")
WALK_SPEED = 0.55  # m/s, mean speed of the orbit and loop paths
LINE_SPEED = 0.5  # m/s
LINE_MIN_SPEED = 0.3  # m/s
_FULL_TURN_MAX_RATE = np.radians(40.0)  # the loop turns a full circle only if this rate suffices
_ORBIT_RADII = np.array([1.9, 1.0])
_LOOP_RADII = np.array([1.8, 1.0])
_LOOP_MAX_ACCEL = 2.0  # m/s^2: bounds the speed of short loops
# turn: a straight walk, a 90 degree turn while walking (heading a smooth step over the middle leg: at
# walking speed up to ~47 deg/s, as a car turning a corner), then a straight walk on, camera looking ahead.
_TURN_LEGS = (1.5, 1.5, 1.8)  # metres: before, during and after the turn


def make_trajectory(kind: str, timestamps: np.ndarray, seed: int) -> np.ndarray:
    """Poses (N,4,4) at `timestamps` (seconds) for trajectory `kind`; the same seed gives the same path.

    orbit and line depend only on time, so a shorter sequence is a prefix of a longer one; loop is
    fitted to the whole duration so that its last pose equals its first.
    """
    if kind not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory '{kind}' (expected one of {', '.join(TRAJECTORIES)})")
    t = np.asarray(timestamps, dtype=float)
    rng = np.random.default_rng([seed, TRAJECTORIES.index(kind), 0x7A])
    path = {"orbit": _orbit, "loop": _loop, "line": _line, "turn": _turn}[kind]
    position, angles = path(t, rng)
    poses = np.tile(np.eye(4), (len(t), 1, 1))
    poses[:, :3, :3] = camera_rotation(*angles)
    poses[:, :3, 3] = np.clip(position, CAMERA_ZONE_LO, CAMERA_ZONE_HI)  # a no-op by design; a safety net
    return poses


def camera_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """World-from-camera rotations (N,3,3): optical axis at heading `yaw` (from +x towards +y), tilted up by
    `pitch`, then rolled by `roll` about the optical axis (all radians)."""
    forward = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=1)
    right0 = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], axis=1)  # forward x up, normalised
    down0 = np.cross(forward, right0)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right = c * right0 + s * down0
    down = -s * right0 + c * down0
    return np.stack([right, down, forward], axis=2)


def _limited(amplitude, omega, rate: float, accel: float):
    """The largest amplitude <= `amplitude` of a sinusoid at angular frequency omega whose speed stays
    <= rate and whose acceleration stays <= accel."""
    omega = np.maximum(omega, 1e-9)
    return np.minimum(np.minimum(amplitude, rate / omega), accel / omega**2)


def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float, rate: float, accel: float,
            period: float | None = None, count: int = 3) -> np.ndarray:
    """Hand shake: `count` sinusoids of 0.15-0.8 Hz, each bounded by `amplitude`, `rate` and `accel`.
    With a period, frequencies are whole multiples of 1/period so the wobble repeats exactly."""
    freqs = rng.uniform(0.15, 0.8, count)
    if period is not None:
        freqs = np.maximum(1.0, np.round(freqs * period)) / period
    amps = _limited(amplitude, 2 * np.pi * freqs, rate, accel) * rng.uniform(0.5, 1.0, count)
    phases = rng.uniform(0, 2 * np.pi, count)
    return np.sum(amps * np.sin(2 * np.pi * np.outer(t, freqs) + phases), axis=1)


def _shake(rng: np.random.Generator, t: np.ndarray, period: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Position (N,3) and (yaw, pitch, roll) (3,N) wobble of a hand-held camera."""
    pos = np.stack([_wobble(rng, t, 0.02, 0.03, 0.15, period) for _ in range(3)], axis=1)
    ang = np.stack([_wobble(rng, t, np.radians(1.5), np.radians(3.0), np.radians(10.0), period)
                    for _ in range(3)])
    return pos, ang


def _orbit(t: np.ndarray, rng: np.random.Generator):
    """Around the room's centre on an ellipse, looking across the room (at the far walls, boxes, floor)."""
    direction = rng.choice([-1.0, 1.0])
    mean_radius = np.sqrt(np.mean(_ORBIT_RADII**2))
    phase = rng.uniform(0, 2 * np.pi) + direction * WALK_SPEED / mean_radius * t
    height = 1.5 + 0.15 * np.sin(0.35 * t + rng.uniform(0, 2 * np.pi))
    position = np.stack([_ORBIT_RADII[0] * np.cos(phase), _ORBIT_RADII[1] * np.sin(phase), height], axis=1)
    # Look roughly through the centre, swinging slowly left and right of it.
    yaw = phase + np.pi + 0.3 * np.sin(0.25 * t + rng.uniform(0, 2 * np.pi))
    pitch = np.radians(-14.0) + np.radians(6.0) * np.sin(0.3 * t + rng.uniform(0, 2 * np.pi))
    roll = np.radians(3.0) * np.sin(0.4 * t + rng.uniform(0, 2 * np.pi))
    shake_pos, shake_ang = _shake(rng, t)
    return position + shake_pos, (yaw + shake_ang[0], pitch + shake_ang[1], roll + shake_ang[2])


def _loop(t: np.ndarray, rng: np.random.Generator):
    """A closed walk around the centre, looking outwards at the walls; it ends where (and as) it began.

    Long enough sequences turn a full circle (so the middle of the walk sees other walls than the start);
    short ones swing out and back, slowly enough to stay under the angular speed limit. Closing a loop
    within less than about 2 s at walking speed would need unrealistic accelerations, so such short
    loops walk slower.
    """
    duration = max(float(t[-1] - t[0]), 1e-6) if len(t) else 1e-6
    tau = (t - (t[0] if len(t) else 0.0)) / duration  # 0 .. 1
    omega = 2 * np.pi / duration  # one loop
    perimeter = _ellipse_perimeter(*_LOOP_RADII)
    # One lap of the scaled ellipse peaks at acceleration speed * a * omega^2 * duration / perimeter.
    speed = min(WALK_SPEED, _LOOP_MAX_ACCEL * perimeter / (_LOOP_RADII[0] * omega**2 * duration))
    laps_wanted = speed * duration / perimeter
    laps = max(1, int(round(laps_wanted)))
    scale = min(1.0, laps_wanted / laps)
    direction = rng.choice([-1.0, 1.0])
    start = rng.uniform(0, 2 * np.pi)
    phase = start + direction * 2 * np.pi * laps * tau
    # Slow sways repeat once per loop: short loops shrink them to keep their speed bounded.
    height = 1.5 + _limited(0.1, omega, 0.1, 0.2) * np.sin(2 * np.pi * tau + rng.uniform(0, 2 * np.pi))
    position = np.stack([scale * _LOOP_RADII[0] * np.cos(phase), scale * _LOOP_RADII[1] * np.sin(phase),
                         height], axis=1)
    if 2 * np.pi * laps / duration <= _FULL_TURN_MAX_RATE:
        yaw = phase
    else:
        swing = min(np.pi / 2, _FULL_TURN_MAX_RATE * duration / (2 * np.pi))
        yaw = start + swing * np.sin(2 * np.pi * tau)
    pitch = np.radians(-10.0) + _limited(np.radians(4.0), omega, np.radians(5.0), np.radians(20.0)) * np.sin(
        2 * np.pi * tau + rng.uniform(0, 2 * np.pi))
    shake_pos, shake_ang = _shake(rng, t - t[0] if len(t) else t, period=duration)
    return position + shake_pos, (yaw + shake_ang[0], pitch + shake_ang[1], shake_ang[2])


def _line(t: np.ndarray, rng: np.random.Generator):
    """A straight walk along the room's length, looking ahead at the far wall, with a little shake.

    One pass at constant speed when the room is long enough for the duration at >= LINE_MIN_SPEED;
    longer sequences walk forwards and backwards along the line (slowing down to reverse).
    """
    length = 2 * (CAMERA_ZONE_HI[0] - 0.3)
    elapsed = t - (t[0] if len(t) else 0.0)
    duration = float(elapsed[-1]) if len(t) > 1 else 0.0
    heading = rng.choice([0.0, np.pi])
    ahead = np.array([np.cos(heading), np.sin(heading)])
    lateral = rng.uniform(-0.6, 0.6)
    start = -ahead * length / 2 + np.array([-ahead[1], ahead[0]]) * lateral
    if duration * LINE_MIN_SPEED <= length:
        travelled = min(LINE_SPEED, length / duration if duration > 0 else LINE_SPEED) * elapsed
    else:
        travelled = length / 2 * (1 - np.cos(np.pi * LINE_SPEED * elapsed / length))
    xy = start + np.outer(travelled, ahead)
    position = np.column_stack([xy, np.full(len(t), 1.4)])
    yaw = heading + np.radians(5.0) * np.sin(0.3 * t + rng.uniform(0, 2 * np.pi))
    pitch = np.full(len(t), np.radians(-8.0))
    shake_pos, shake_ang = _shake(rng, t)
    return position + shake_pos, (yaw + shake_ang[0], pitch + shake_ang[1], shake_ang[2])


def _turn(t: np.ndarray, rng: np.random.Generator):
    """Walk ahead, turn 90 degrees left or right within 1.5 m of walking, walk on: the path monocular SLAM
    loses track on when mapping falls behind (new views of a new wall, little parallax while turning).

    Walks the whole path at LINE_SPEED, or slower so that a longer sequence ends where the path does.
    """
    before, turning, after = _TURN_LEGS
    length = before + turning + after
    elapsed = t - (t[0] if len(t) else 0.0)
    duration = float(elapsed[-1]) if len(t) > 1 else 0.0
    speed = min(LINE_SPEED, length / duration) if duration > 0 else LINE_SPEED
    side = rng.choice([-1.0, 1.0])  # left or right
    heading0 = rng.choice([0.0, np.pi])  # along the room's length, either way; the turn faces a side wall

    def heading_at(s: np.ndarray) -> np.ndarray:
        x = np.clip((s - before) / turning, 0.0, 1.0)
        return side * np.pi / 2 * (1 - np.cos(np.pi * x)) / 2

    # The path in its own frame (start at 0, heading +x), integrated on a fine arc-length grid.
    grid = np.linspace(0.0, length, 4001)
    step = np.diff(grid)
    mid = heading_at(grid[:-1] + step / 2)
    local = np.vstack([[0.0, 0.0], np.cumsum(np.column_stack([np.cos(mid), np.sin(mid)]) * step[:, None], axis=0)])
    c, s_ = np.cos(heading0), np.sin(heading0)
    world = local @ np.array([[c, s_], [-s_, c]])
    centre = (CAMERA_ZONE_LO[:2] + CAMERA_ZONE_HI[:2]) / 2
    world += centre - (world.min(axis=0) + world.max(axis=0)) / 2  # the path centred in the room
    travelled = np.minimum(speed * elapsed, length)
    xy = np.column_stack([np.interp(travelled, grid, world[:, 0]), np.interp(travelled, grid, world[:, 1])])
    position = np.column_stack([xy, np.full(len(t), 1.4)])
    yaw = heading0 + heading_at(travelled)
    pitch = np.full(len(t), np.radians(-8.0))
    shake_pos, shake_ang = _shake(rng, t)
    return position + shake_pos, (yaw + shake_ang[0], pitch + shake_ang[1], shake_ang[2])


def _ellipse_perimeter(a: float, b: float) -> float:
    """Ramanujan's approximation."""
    h = ((a - b) / (a + b)) ** 2
    return float(np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h))))
