"""The synthetic world: a closed, textured 8 m x 6 m x 3 m room with boxes, as textured rectangles.

World frame: x along the room's length, y along its width, z up; the floor is z = 0 and the room is
centred on x = y = 0. Boxes stand along the walls (within WALL_BAND of them) and low boxes stand in
the middle, so every point of CAMERA_ZONE is at least CLEARANCE from every surface by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from slam.synthetic.textures import make_texture

ROOM_HALF = np.array([4.0, 3.0])  # half extents in x, y (metres)
ROOM_HEIGHT = 3.0
WALL_BAND = 0.9  # boxes along a wall reach at most this far into the room
LOW_BOX_MAX_HEIGHT = 0.45  # boxes in the middle stay below the camera zone
CLEARANCE = 0.5
# Where camera centres may go: CLEARANCE from the wall band, the low boxes and the ceiling.
CAMERA_ZONE_LO = np.array([-ROOM_HALF[0] + WALL_BAND + CLEARANCE, -ROOM_HALF[1] + WALL_BAND + CLEARANCE,
                           LOW_BOX_MAX_HEIGHT + CLEARANCE + 0.05])
CAMERA_ZONE_HI = np.array([ROOM_HALF[0] - WALL_BAND - CLEARANCE, ROOM_HALF[1] - WALL_BAND - CLEARANCE,
                           ROOM_HEIGHT - CLEARANCE - 0.1])
_LIGHT = np.array([0.35, -0.5, 0.8]) / np.linalg.norm([0.35, -0.5, 0.8])
_GAP = 0.03  # keep boxes off the walls and each other: no coplanar, z-fighting faces


@dataclass(frozen=True)
class Surface:
    """A textured rectangle origin + a*u + b*v, a in [0, width], b in [0, height], seen from the normal side."""

    origin: np.ndarray
    u: np.ndarray  # unit edge directions
    v: np.ndarray
    width: float
    height: float
    texture: np.ndarray  # BGR uint8 at TEXEL_M per texel; texel (i, j) centred on a = (i + 0.5) TEXEL_M

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.u, self.v)

    @property
    def corners(self) -> np.ndarray:
        o, a, b = self.origin, self.u * self.width, self.v * self.height
        return np.array([o, o + a, o + a + b, o + b])


@dataclass(frozen=True)
class Box:
    centre: np.ndarray  # (x, y) of the footprint centre; the box stands on the floor
    size: np.ndarray  # (sx, sy, sz) in its own frame
    yaw: float

    def footprint(self) -> np.ndarray:
        """The 4 floor corners (4,2)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * self.size[:2] / 2
        return self.centre + local @ np.array([[c, s], [-s, c]])

    @property
    def radius(self) -> float:
        return float(np.hypot(*self.size[:2]) / 2)


@dataclass(frozen=True)
class Scene:
    surfaces: tuple[Surface, ...]
    boxes: tuple[Box, ...]

    def clearance(self, points: np.ndarray) -> np.ndarray:
        """Distance (N,) from each point (N,3) to the nearest surface."""
        points = np.atleast_2d(points)
        best = np.full(len(points), np.inf)
        for s in self.surfaces:
            d = points - s.origin
            a = np.clip(d @ s.u, 0, s.width)
            b = np.clip(d @ s.v, 0, s.height)
            best = np.minimum(best, np.linalg.norm(d - np.outer(a, s.u) - np.outer(b, s.v), axis=1))
        return best


def build_scene(seed: int, textured: bool = True) -> Scene:
    """The room, its boxes and all textures; the same seed always gives the same scene.

    textured=False skips the textures (about a second of work) for geometry-only uses such as
    clearance checks; such a scene cannot be rendered.
    """
    root = np.random.SeedSequence([seed, 0x5C3E])
    layout_seq, texture_seq = root.spawn(2)
    boxes = _place_boxes(np.random.default_rng(layout_seq))
    rects = _room_rects() + [r for box in boxes for r in _box_rects(box)]
    texture_rngs = [np.random.default_rng(s) for s in texture_seq.spawn(len(rects))]
    surfaces = tuple(_textured(rect, rng, textured) for rect, rng in zip(rects, texture_rngs, strict=True))
    return Scene(surfaces, tuple(boxes))


# A rectangle before texturing: (corner, edge1, edge2), oriented so edge1 x edge2 faces the viewer.
_Rect = tuple[np.ndarray, np.ndarray, np.ndarray]


def _rect(corner, edge1, edge2, facing) -> _Rect:
    corner, edge1, edge2 = (np.asarray(x, dtype=float) for x in (corner, edge1, edge2))
    if np.dot(np.cross(edge1, edge2), facing) < 0:
        edge1, edge2 = edge2, edge1
    return corner, edge1, edge2


def _room_rects() -> list[_Rect]:
    hx, hy, h = ROOM_HALF[0], ROOM_HALF[1], ROOM_HEIGHT
    lx, ly = 2 * hx, 2 * hy
    return [
        _rect([-hx, -hy, 0], [lx, 0, 0], [0, ly, 0], [0, 0, 1]),  # floor
        _rect([-hx, -hy, h], [lx, 0, 0], [0, ly, 0], [0, 0, -1]),  # ceiling
        _rect([-hx, -hy, 0], [0, ly, 0], [0, 0, h], [1, 0, 0]),
        _rect([hx, -hy, 0], [0, ly, 0], [0, 0, h], [-1, 0, 0]),
        _rect([-hx, -hy, 0], [lx, 0, 0], [0, 0, h], [0, 1, 0]),
        _rect([-hx, hy, 0], [lx, 0, 0], [0, 0, h], [0, -1, 0]),
    ]


def _box_rects(box: Box) -> list[_Rect]:
    """Top and four sides (the bottom rests on the floor, never visible)."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    ex, ey, ez = np.array([c, s, 0.0]), np.array([-s, c, 0.0]), np.array([0.0, 0.0, 1.0])
    sx, sy, sz = box.size
    base = np.array([box.centre[0], box.centre[1], 0.0])
    low = base - ex * sx / 2 - ey * sy / 2  # the (-x, -y) floor corner
    return [
        _rect(low + ez * sz, ex * sx, ey * sy, ez),
        _rect(low, ey * sy, ez * sz, -ex),
        _rect(low + ex * sx, ey * sy, ez * sz, ex),
        _rect(low, ex * sx, ez * sz, -ey),
        _rect(low + ey * sy, ex * sx, ez * sz, ey),
    ]


def _textured(rect: _Rect, rng: np.random.Generator, textured: bool = True) -> Surface:
    corner, e1, e2 = rect
    width, height = float(np.linalg.norm(e1)), float(np.linalg.norm(e2))
    u, v = e1 / width, e2 / height
    if not textured:
        return Surface(corner, u, v, width, height, np.zeros((0, 0, 3), np.uint8))
    # Lambert-like constant shading per surface, plus a little variety, so surfaces differ.
    shade = 0.8 + 0.2 * float(np.dot(np.cross(u, v), _LIGHT)) + rng.uniform(-0.05, 0.05)
    texture = make_texture(width, height, rng, brightness=shade)
    return Surface(corner, u, v, width, height, texture)


def _place_boxes(rng: np.random.Generator) -> list[Box]:
    boxes: list[Box] = []
    # (wall axis, wall side, boxes to place): 3 along each long wall, 2 along each short one.
    for axis, side, count in ((1, -1, 3), (1, 1, 3), (0, -1, 2), (0, 1, 2)):
        for _ in range(count):
            _try_place(boxes, partial(_wall_box, rng, axis, side), _in_wall_band(axis, side))
    for _ in range(3):
        _try_place(boxes, partial(_low_box, rng), _in_middle)
    return boxes


def _try_place(boxes: list[Box], propose, valid, attempts: int = 50) -> None:
    """Rejection sampling: keep the first proposal that is valid and clear of the boxes placed so far."""
    for _ in range(attempts):
        box = propose()
        if valid(box) and all(np.linalg.norm(box.centre - b.centre) > box.radius + b.radius + _GAP for b in boxes):
            boxes.append(box)
            return


def _wall_box(rng: np.random.Generator, axis: int, side: int) -> Box:
    other = 1 - axis
    depth = rng.uniform(0.25, 0.75)
    centre = np.zeros(2)
    centre[axis] = side * (ROOM_HALF[axis] - _GAP - depth / 2 - rng.uniform(0, 0.1))
    centre[other] = rng.uniform(-ROOM_HALF[other] + 0.5, ROOM_HALF[other] - 0.5)
    height = rng.choice([rng.uniform(0.3, 0.9), rng.uniform(0.9, 1.6), rng.uniform(1.6, 2.4)], p=[0.4, 0.4, 0.2])
    size = np.array([0.0, 0.0, height])
    size[axis], size[other] = depth, rng.uniform(0.3, 1.2)
    return Box(centre, size, float(rng.uniform(-0.35, 0.35)))


def _low_box(rng: np.random.Generator) -> Box:
    size = np.array([rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9), rng.uniform(0.15, LOW_BOX_MAX_HEIGHT)])
    centre = rng.uniform(-1, 1, size=2) * (ROOM_HALF - WALL_BAND - 0.6)
    return Box(centre, size, float(rng.uniform(0, np.pi)))


def _in_wall_band(axis: int, side: int):
    def valid(box: Box) -> bool:
        corners = box.footprint()
        inside = np.all(np.abs(corners) <= ROOM_HALF - _GAP)
        in_band = np.all(side * corners[:, axis] >= ROOM_HALF[axis] - WALL_BAND)
        return bool(inside and in_band)

    return valid


def _in_middle(box: Box) -> bool:
    return bool(np.all(np.abs(box.footprint()) <= ROOM_HALF - WALL_BAND - _GAP))
