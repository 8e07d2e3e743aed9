"""Procedural surface textures: a multi-scale "dead leaves" collage of random shapes over smooth colour noise.

Shape sizes follow a power law (density ~ r^-3), which makes the texture roughly scale invariant: ORB/FAST
finds distinctive corners whether a surface is seen from 0.5 m or from 8 m. Nothing is periodic, so
descriptors do not repeat across a surface.
"""

from __future__ import annotations

import cv2
import numpy as np

TEXEL_M = 0.004  # texture resolution: 4 mm per texel
MIP_LEVELS = 6  # 4 mm .. 128 mm per texel
ALIGN = 1 << (MIP_LEVELS - 1)  # texture sizes are multiples of this, so every mip level halves exactly
_SHIFT = 4  # sub-texel precision (bits) for cv2 drawing
_COVERAGE = 2.5  # mean number of shapes covering a texel
_R_MIN, _R_MAX = 4.0, 90.0  # shape radius range in texels (1.6 cm .. 36 cm)


def make_texture(width_m: float, height_m: float, rng: np.random.Generator, brightness: float = 1.0) -> np.ndarray:
    """A BGR uint8 texture covering (at least) width_m x height_m metres at TEXEL_M resolution."""
    w = int(np.ceil(width_m / TEXEL_M / ALIGN)) * ALIGN
    h = int(np.ceil(height_m / TEXEL_M / ALIGN)) * ALIGN
    palette = _palette(rng)
    image = _smooth_field(w, h, palette, rng)
    _draw_leaves(image, palette, rng)
    _add_grain(image, rng)
    if brightness != 1.0:
        image = cv2.convertScaleAbs(image, alpha=brightness)
    return image


def mip_pyramid(texture: np.ndarray, levels: int = MIP_LEVELS) -> list[np.ndarray]:
    """Level l has 2^l times coarser texels, each the mean of a 2^l x 2^l block, for alias-free minification.

    Box averaging keeps texel i of level l centred on level-0 coordinate (i + 0.5) 2^l - 0.5 (pyrDown would
    shift it), so sampling any level at the same surface point sees the same place.
    """
    pyramid = [texture]
    for _ in range(levels - 1):
        h, w = pyramid[-1].shape[:2]
        pyramid.append(cv2.resize(pyramid[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return pyramid


def _palette(rng: np.random.Generator) -> np.ndarray:
    """A few BGR colours that give a surface its own character (used as chroma, luminance is random)."""
    hues = rng.uniform(0, 180, size=4)
    sats = rng.uniform(40, 200, size=4)
    hsv = np.stack([hues, sats, np.full(4, 255.0)], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0].astype(np.float32) / 255.0


def _smooth_field(w: int, h: int, palette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Background: colour noise varying over ~20 cm, so areas between shapes are not flat."""
    cell = 50  # texels per noise sample
    gw, gh = w // cell + 2, h // cell + 2
    lum = rng.uniform(60, 200, size=(gh, gw, 1)).astype(np.float32)
    tint = palette[rng.integers(0, len(palette), size=(gh, gw))]
    coarse = (lum * (0.5 + 0.6 * tint)).clip(0, 255).astype(np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _draw_leaves(image: np.ndarray, palette: np.ndarray, rng: np.random.Generator) -> None:
    """Random convex shapes (rectangles, ellipses, triangles, strokes) drawn in random order."""
    h, w = image.shape[:2]
    # Truncated power law p(r) ~ r^-3 by inverse CDF; E[r^2] gives the count for the wanted coverage.
    a2, b2 = _R_MIN**-2, _R_MAX**-2
    mean_area = np.pi * 2.0 * np.log(_R_MAX / _R_MIN) / (a2 - b2)
    count = int(_COVERAGE * w * h / mean_area)
    radius = (a2 - rng.uniform(size=count) * (a2 - b2)) ** -0.5
    centre = rng.uniform(-0.05, 1.05, size=(count, 2)) * (w, h)
    kind = rng.integers(0, len(_OUTLINES), size=count)
    angle = rng.uniform(0, np.pi, size=count)
    aspect = rng.uniform(0.25, 1.0, size=count)
    lum = rng.uniform(10, 245, size=count)
    tint = palette[rng.integers(0, len(palette), size=count)]
    mix = rng.uniform(0.0, 0.8, size=(count, 1))
    colours = (lum[:, None] * ((1 - mix) + mix * tint * 1.4)).clip(0, 255).tolist()
    polygons: list = [None] * count
    for k, outline in enumerate(_OUTLINES):
        idx = np.flatnonzero(kind == k)
        local = outline[None] * np.stack([radius[idx], radius[idx] * aspect[idx]], axis=1)[:, None, :]
        c, s = np.cos(angle[idx])[:, None], np.sin(angle[idx])[:, None]
        pts = np.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1]], axis=2)
        pts = np.round((pts + centre[idx, None, :]) * (1 << _SHIFT)).astype(np.int32)
        for j, i in enumerate(idx):
            polygons[i] = pts[j]
    for poly, colour in zip(polygons, colours, strict=True):
        cv2.fillConvexPoly(image, poly, colour, cv2.LINE_AA, _SHIFT)


def _outlines() -> tuple[np.ndarray, ...]:
    """Unit shapes, scaled per shape by (radius, radius * aspect): rectangle, ellipse, triangle, stroke."""
    phi = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    return (
        np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]),
        np.stack([np.cos(phi), np.sin(phi)], axis=1),
        np.array([[1.0, 0.0], [-0.6, 1.2], [-0.8, -0.9]]),
        np.array([[-1.0, -0.08], [1.0, -0.08], [1.0, 0.08], [-1.0, 0.08]]),
    )


_OUTLINES = _outlines()


def _add_grain(image: np.ndarray, rng: np.random.Generator) -> None:
    """Fine luminance grain: texture for close-ups, below the shapes' scale."""
    h, w = image.shape[:2]
    grain = rng.standard_normal(size=(h, w), dtype=np.float32) * 10.0
    grain = cv2.GaussianBlur(grain, (0, 0), 0.8)
    cv2.add(image, cv2.merge([grain, grain, grain]), dst=image, dtype=cv2.CV_8U)
