"""Checks of rendered images against where the geometry projects (shared by the viewer tests)."""

from __future__ import annotations

import cv2
import numpy as np

from slam.viewer.scene import BACKGROUND_RGB, Scene
from slam.viewer.view import ViewCamera

BACKGROUND = np.round(BACKGROUND_RGB * 255).astype(int)


def drawn(image_rgb: np.ndarray) -> np.ndarray:
    """Pixels that are not background."""
    return np.abs(image_rgb.astype(int) - BACKGROUND).max(axis=2) > 6


def of_color(image_rgb: np.ndarray, rgb01: np.ndarray, tol: int = 40) -> np.ndarray:
    return np.abs(image_rgb.astype(int) - np.round(np.asarray(rgb01) * 255)).max(axis=2) <= tol


def polyline_mask(view: ViewCamera, positions: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Where the polyline through `positions` projects (all its points must lie in front of the view)."""
    uv, z = view.project(positions)
    assert (z > 0).all(), "the test geometry must lie in front of the view"
    mask = np.zeros((view.height, view.width), np.uint8)
    pts = np.round(uv).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [pts], False, 1, thickness, cv2.LINE_8)
    return mask.astype(bool)


def distance_to(mask: np.ndarray) -> np.ndarray:
    """Per pixel, the distance (px) to the nearest pixel of `mask`."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)


def trajectory_check(
    image_rgb: np.ndarray, view: ViewCamera, positions: np.ndarray, rgb01: np.ndarray, near_px: float = 3.0
) -> tuple[float, float]:
    """Two shares: of the projected trajectory with a pixel of its colour within near_px, and of the pixels of
    that colour lying within near_px of the projected trajectory."""
    line = polyline_mask(view, positions)
    colored = of_color(image_rgb, rgb01)
    covered = distance_to(colored)[line] <= near_px
    on_line = distance_to(line)[colored] <= near_px
    return float(covered.mean()), float(on_line.mean()) if len(on_line) else 0.0


def points_check(image_rgb: np.ndarray, view: ViewCamera, points: np.ndarray) -> float:
    """Share of the points projecting inside the image whose pixel is drawn."""
    uv, z = view.project(points)
    uv = np.round(uv).astype(int)
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < view.width) & (uv[:, 1] >= 0) & (uv[:, 1] < view.height)
    return float(drawn(image_rgb)[uv[inside, 1], uv[inside, 0]].mean())


def stray_share(image_rgb: np.ndarray, view: ViewCamera, scene: Scene, near_px: float = 4.0) -> float:
    """Share of drawn pixels farther than near_px from every projected point and segment of the scene."""
    mask = np.zeros((view.height, view.width), np.uint8)
    uv, z = view.project(scene.points)
    uv = np.round(uv[z > 0]).astype(int)
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < view.width) & (uv[:, 1] >= 0) & (uv[:, 1] < view.height)
    mask[uv[ok, 1], uv[ok, 0]] = 1
    a, za = view.project(scene.segments[:, 0])
    b, zb = view.project(scene.segments[:, 1])
    front = (za > 0) & (zb > 0)
    for p, q in zip(np.round(a[front]).astype(int), np.round(b[front]).astype(int)):
        cv2.line(mask, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, 1, cv2.LINE_8)
    painted = drawn(image_rgb)
    return float((distance_to(mask.astype(bool))[painted] > near_px).mean()) if painted.any() else 1.0
