"""Writing run outputs: the map as a PLY point cloud and run metadata as JSON, atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from slam.trajectory import write_text_atomic


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray | None = None) -> None:
    """ASCII PLY with float xyz and (optionally) uchar red/green/blue per vertex."""
    header = ["ply", "format ascii 1.0", f"element vertex {len(xyz)}",
              "property float x", "property float y", "property float z"]
    if rgb is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    if rgb is not None:
        rows = [f"{p[0]:.5f} {p[1]:.5f} {p[2]:.5f} {c[0]} {c[1]} {c[2]}" for p, c in zip(xyz, rgb)]
    else:
        rows = [f"{p[0]:.5f} {p[1]:.5f} {p[2]:.5f}" for p in xyz]
    write_text_atomic(path, "\n".join(header + rows) + "\n")


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def _clean(value: Any) -> Any:
    """JSON has no NaN / inf / numpy scalars: map them to null and plain numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
