"""A numpy / OpenCV renderer of a Scene through a ViewCamera: the fallback when open3d cannot render.

Points are squares painted far to near; segments are drawn after them (on top), clipped at a near plane.
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.viewer.scene import BACKGROUND_RGB, Scene
from slam.viewer.view import ViewCamera

POINT_SIZE = 3
LINE_WIDTH = 2
_NEAR = 1e-3
_LIMIT = 1 << 20  # pixel coordinates are clamped here before OpenCV clips the lines


class RasterRenderer:
    name = "raster"

    def __init__(self, point_size: int = POINT_SIZE, line_width: int = LINE_WIDTH):
        self.point_size = point_size
        self.line_width = line_width

    def render(self, scene: Scene, view: ViewCamera) -> np.ndarray:
        """(H,W,3) uint8 RGB."""
        image = np.empty((view.height, view.width, 3), np.uint8)
        image[:] = np.round(BACKGROUND_RGB * 255).astype(np.uint8)
        self._points(image, scene, view)
        self._segments(image, scene, view)
        return image

    def close(self) -> None:
        pass

    def _points(self, image: np.ndarray, scene: Scene, view: ViewCamera) -> None:
        if len(scene.points) == 0:
            return
        uv, z = view.project(scene.points)
        keep = (z > _NEAR) & np.isfinite(uv).all(axis=1)
        uv = np.round(uv[keep]).astype(np.int64)
        z, colors = z[keep], np.round(scene.point_colors[keep] * 255).astype(np.uint8)
        order = np.argsort(-z, kind="stable")  # far first: near points are painted over them
        uv, colors = uv[order], colors[order]
        h, w = image.shape[:2]
        lo = -(self.point_size // 2)
        for dy in range(lo, lo + self.point_size):
            for dx in range(lo, lo + self.point_size):
                u, v = uv[:, 0] + dx, uv[:, 1] + dy
                ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
                image[v[ok], u[ok]] = colors[ok]

    def _segments(self, image: np.ndarray, scene: Scene, view: ViewCamera) -> None:
        if len(scene.segments) == 0:
            return
        a, b, keep = _clip_near(scene.segments, view)
        if not keep.any():
            return
        ua, _ = view.project(a[keep])
        ub, _ = view.project(b[keep])
        pts = np.clip(np.round(np.stack([ua, ub], axis=1)), -_LIMIT, _LIMIT).astype(np.int32)
        colors = np.round(scene.segment_colors[keep] * 255).astype(np.int64)
        # One call per run of equal colours keeps the drawing order (later segments on top).
        change = np.flatnonzero(np.any(np.diff(colors, axis=0) != 0, axis=1)) + 1
        for start, stop in zip(np.r_[0, change], np.r_[change, len(colors)]):
            color = tuple(int(c) for c in colors[start])
            cv2.polylines(image, list(pts[start:stop]), False, color, self.line_width, cv2.LINE_8)


def _clip_near(segments: np.ndarray, view: ViewCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment ends behind the near plane moved onto it; keep marks segments with any part in front."""
    a, b = segments[:, 0].astype(float), segments[:, 1].astype(float)
    za = a @ view.T_cw[2, :3] + view.T_cw[2, 3]
    zb = b @ view.T_cw[2, :3] + view.T_cw[2, 3]
    keep = (za > _NEAR) | (zb > _NEAR)
    s = np.clip((_NEAR - za) / np.where(zb != za, zb - za, 1.0), 0.0, 1.0)[:, None]
    crossing = a + s * (b - a)  # where the segment meets the near plane (when one end is behind it)
    a = np.where((za <= _NEAR)[:, None], crossing, a)
    b = np.where((zb <= _NEAR)[:, None], crossing, b)
    return a, b, keep
