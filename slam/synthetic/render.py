"""Analytic ray casting of textured rectangles, vectorised with numpy, textures sampled with cv2.remap.

For a plane seen by a pinhole camera, inverse depth 1/z is affine in the pixel coordinates, and so is
(any in-plane coordinate) * (1/z). A pixel lies on a rectangle when four such affine maps (distances to
its edges, times 1/z) are non-negative, and it shows the surface with the largest 1/z: a z-buffer over
affine maps, evaluated inside each rectangle's image bounding box. Depth is the exact camera-frame z.
Texturing then samples a mip-mapped atlas (trilinear) at the pixel's texture coordinate.
"""

from __future__ import annotations

import cv2
import numpy as np

from slam.camera import Camera
from slam.synthetic.atlas import build_atlas
from slam.synthetic.scene import Scene
from slam.synthetic.textures import TEXEL_M

_NEAR = 0.01  # metres: the near clipping plane for bounding boxes
_FAR_INV = np.float32(1.0 / 100.0)  # z-buffer initial inverse depth
_EPS = 2e-4  # metres: rectangles grow by this so shared edges leave no float-rounding cracks
_REMAP_COLS = 1024  # scattered samples go to cv2.remap as rows of this many


class Renderer:
    """Renders a Scene through a Camera: `render(T_wc)` gives a BGR uint8 image and float32 depth (metres)."""

    def __init__(self, scene: Scene, camera: Camera):
        self.camera = camera
        surfaces = scene.surfaces
        if any(s.texture.size == 0 for s in surfaces):
            raise ValueError("cannot render a scene built with textured=False")
        self._atlas = build_atlas([s.texture for s in surfaces])
        self._cols = np.arange(camera.width, dtype=np.float64)
        self._rows = np.arange(camera.height, dtype=np.float64)
        self._normals = np.array([s.normal for s in surfaces])
        self._origins = np.array([s.origin for s in surfaces])
        self._u = np.array([s.u for s in surfaces])
        self._v = np.array([s.v for s in surfaces])
        self._size = np.array([[s.width, s.height] for s in surfaces])
        self._corners = np.array([s.corners for s in surfaces])

    def render(self, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        H, W = self.camera.height, self.camera.width
        R, t = T_wc[:3, :3], T_wc[:3, 3]
        coeffs, lod_bias = self._affine_maps(R, t)
        # Per pixel: 1/z, atlas x/z, atlas y/z (level-0 texels), and the mip level bias of its surface.
        buffers = np.zeros((4, H, W), dtype=np.float32)
        buffers[0] = _FAR_INV
        for k in np.flatnonzero(np.einsum("ij,ij->i", self._normals, t - self._origins) > 1e-9):
            box = self._bounding_box(k, R, t)
            if box is not None:
                self._zbuffer(coeffs[k], lod_bias[k], box, buffers)
        hit = buffers[0] > _FAR_INV
        image = self._shade(buffers)
        image[~hit] = 0
        depth = np.where(hit, 1.0 / buffers[0], 0.0).astype(np.float32)
        return image, depth

    def _affine_maps(self, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per surface, 7 affine maps (a*col + b*row + c) as (S,7,3) and each surface's mip level bias (S,).

        With ray d = K^-1 (col, row, 1) and camera-frame plane n_c.X = c: 1/z = n_c.d / c, and an in-plane
        coordinate s along unit edge e from corner p gives s/z = (R^T e).d + e.(t - p) / z. The maps are
        1/z; (s + eps)/z, (w + eps - s)/z and the same for the second axis; atlas x/z and y/z.
        """
        cam = self.camera
        n_c = self._normals @ R
        plane_c = np.einsum("ij,ij->i", self._normals, self._origins - t)  # negative when facing the camera
        inv = n_c / plane_c[:, None]
        rel = t - self._origins
        u_c, v_c = self._u @ R, self._v @ R
        s0 = np.einsum("ij,ij->i", self._u, rel)[:, None]
        t0 = np.einsum("ij,ij->i", self._v, rel)[:, None]
        w, h = self._size[:, 0:1] + _EPS, self._size[:, 1:2] + _EPS
        s_map, t_map = u_c + s0 * inv, v_c + t0 * inv  # s/z and t/z
        offsets = self._atlas.offsets
        maps = np.stack([
            inv,
            s_map + _EPS * inv, w * inv - s_map,
            t_map + _EPS * inv, h * inv - t_map,
            s_map / TEXEL_M + (offsets[:, 0:1] - 0.5) * inv,  # atlas texel x/z, texel centres on integers
            t_map / TEXEL_M + (offsets[:, 1:2] - 0.5) * inv,
        ], axis=1)
        a = maps[..., 0] / cam.fx
        b = maps[..., 1] / cam.fy
        c = maps[..., 2] - a * cam.cx - b * cam.cy
        # Pixel footprint on the surface (geometric mean of its two axes) is z / (f sqrt(|n_c.d|)) =
        # |plane_c|^-1/2 (1/z)^-3/2 / f; the mip level is log2(footprint / TEXEL_M).
        bias = -0.5 * np.log2(np.abs(plane_c)) - np.log2(np.sqrt(cam.fx * cam.fy) * TEXEL_M)
        return np.stack([a, b, c], axis=-1), bias

    def _bounding_box(self, k: int, R: np.ndarray, t: np.ndarray) -> tuple[int, int, int, int] | None:
        """Pixel bounds (r0, r1, c0, c1) of surface k's image, after clipping it at the near plane."""
        pts = _clip_near((self._corners[k] - t) @ R)
        if len(pts) == 0:
            return None
        cam = self.camera
        cols = cam.fx * pts[:, 0] / pts[:, 2] + cam.cx
        rows = cam.fy * pts[:, 1] / pts[:, 2] + cam.cy
        c0, c1 = max(int(np.floor(cols.min())) - 1, 0), min(int(np.ceil(cols.max())) + 2, cam.width)
        r0, r1 = max(int(np.floor(rows.min())) - 1, 0), min(int(np.ceil(rows.max())) + 2, cam.height)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def _zbuffer(self, coeff: np.ndarray, bias: float, box, buffers: np.ndarray) -> None:
        """Inside `box`, claim the pixels on this rectangle that are nearer than what they show so far."""
        r0, r1, c0, c1 = box
        rows, cols = self._rows[r0:r1], self._cols[c0:c1]
        values = [np.add.outer((m[1] * rows + m[2]).astype(np.float32), (m[0] * cols).astype(np.float32))
                  for m in coeff]
        view = buffers[:, r0:r1, c0:c1]
        win = values[0] > view[0]
        for edge in values[1:5]:
            win &= edge >= 0
        np.copyto(view[0], values[0], where=win)
        np.copyto(view[1], values[5], where=win)
        np.copyto(view[2], values[6], where=win)
        np.copyto(view[3], np.float32(bias), where=win)

    def _shade(self, buffers: np.ndarray) -> np.ndarray:
        """Trilinear sampling: every pixel blends its two nearest mip levels; pixels grouped by level."""
        levels = self._atlas.levels
        H, W = buffers.shape[1:]
        inv = buffers[0]
        x, y = buffers[1] / inv, buffers[2] / inv
        lod = np.clip(buffers[3] - 1.5 * np.log2(inv), 0, len(levels) - 1)
        base = np.minimum(lod.astype(np.int8), len(levels) - 2)
        order = np.argsort(base.ravel(), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(base.ravel(), minlength=len(levels)))])
        xs, ys = x.ravel()[order], y.ravel()[order]
        fs = (lod.ravel() - base.ravel())[order]
        # Colours travel as 4-byte words: scattering uint32 is several times faster than 3-byte rows.
        out = np.empty(H * W, dtype=np.uint32)
        for lv in range(len(levels) - 1):
            lo, hi = bounds[lv], bounds[lv + 1]
            if lo == hi:
                continue
            near = _remap_points(levels[lv], xs[lo:hi], ys[lo:hi], lv)
            far = _remap_points(levels[lv + 1], xs[lo:hi], ys[lo:hi], lv + 1)
            weight = _as_rows(fs[lo:hi])
            blended = cv2.cvtColor(cv2.blendLinear(near, far, 1.0 - weight, weight), cv2.COLOR_BGR2BGRA)
            out[lo:hi] = blended.view(np.uint32).ravel()[: hi - lo]
        image = np.empty(H * W, dtype=np.uint32)
        image[order] = out
        return cv2.cvtColor(image.view(np.uint8).reshape(H, W, 4), cv2.COLOR_BGRA2BGR)


def _clip_near(pts: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (N,3) to z >= _NEAR."""
    inside = pts[:, 2] >= _NEAR
    if inside.all():
        return pts
    if not inside.any():
        return pts[:0]
    out = []
    for i in range(len(pts)):
        p, q = pts[i], pts[(i + 1) % len(pts)]
        if p[2] >= _NEAR:
            out.append(p)
        if (p[2] >= _NEAR) != (q[2] >= _NEAR):
            out.append(p + (q - p) * (_NEAR - p[2]) / (q[2] - p[2]))
    return np.array(out)


def _as_rows(values: np.ndarray) -> np.ndarray:
    """A float32 vector zero-padded into rows of _REMAP_COLS (2-D, as cv2 wants)."""
    rows = -(-len(values) // _REMAP_COLS)
    padded = np.zeros(rows * _REMAP_COLS, dtype=np.float32)
    padded[: len(values)] = values
    return padded.reshape(rows, _REMAP_COLS)


def _remap_points(level_image: np.ndarray, x0: np.ndarray, y0: np.ndarray, level: int) -> np.ndarray:
    """Bilinear samples of mip `level` at level-0 texel coordinates (centres on integers), in the padded
    (rows, _REMAP_COLS, 3) layout of _as_rows."""
    scale = np.float32(0.5**level)
    offset = np.float32(0.5 * scale - 0.5)  # texel centres of level l sit at (i + 0.5) 2^l - 0.5
    mx = _as_rows(x0 * scale + offset)
    my = _as_rows(y0 * scale + offset)
    return cv2.remap(level_image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
