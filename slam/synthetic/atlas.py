"""All surface textures packed into one image per mip level, so a frame is textured with a few remaps."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from slam.synthetic.textures import ALIGN, MIP_LEVELS, mip_pyramid

ATLAS_WIDTH = 16384  # texels at level 0; cv2.remap handles sources below SHRT_MAX wide


@dataclass(frozen=True)
class Atlas:
    levels: tuple[np.ndarray, ...]  # BGR uint8; level l is 2^l times coarser
    offsets: np.ndarray  # (S,2) level-0 texel position (x, y) of each texture's first texel


def build_atlas(textures: list[np.ndarray], levels: int = MIP_LEVELS) -> Atlas:
    """Shelf-pack the textures; each keeps a border of replicated edge texels at every level (>= 1 texel at
    the coarsest) so bilinear sampling never bleeds into a neighbour."""
    pad = ALIGN  # level-0 border: 1 texel at level MIP_LEVELS - 1
    places, width, height = _shelf_pack([t.shape[:2] for t in textures], pad)
    atlas = [np.zeros((height >> lv, width >> lv, 3), np.uint8) for lv in range(levels)]
    for texture, (x, y) in zip(textures, places, strict=True):
        for lv, level in enumerate(mip_pyramid(texture, levels)):
            p = pad >> lv
            framed = cv2.copyMakeBorder(level, p, p, p, p, cv2.BORDER_REPLICATE)
            h, w = framed.shape[:2]
            atlas[lv][(y >> lv):(y >> lv) + h, (x >> lv):(x >> lv) + w] = framed
    offsets = np.array([(x + pad, y + pad) for x, y in places], dtype=float)
    return Atlas(tuple(atlas), offsets)


def _shelf_pack(sizes: list[tuple[int, int]], pad: int) -> tuple[list[tuple[int, int]], int, int]:
    """Positions (x, y) of padded (h, w) rectangles on shelves, tallest first; all multiples of ALIGN."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    places: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    x = y = shelf = 0
    for i in order:
        h, w = sizes[i][0] + 2 * pad, sizes[i][1] + 2 * pad
        if w > ATLAS_WIDTH:
            raise ValueError(f"texture of {w} texels is wider than the atlas")
        if x + w > ATLAS_WIDTH:
            x, y, shelf = 0, y + shelf, 0
        places[i] = (x, y)
        x, shelf = x + w, max(shelf, h)
    return places, ATLAS_WIDTH, y + shelf
