"""SuperPoint (DeTone, Malisiewicz & Rabinovich, CVPRW 2018) in PyTorch, loading Magic Leap's v1 checkpoint.

Network: a VGG-style encoder (eight 3x3 convolutions, three 2x2 max-pools: 1/8 resolution) shared by
  - a detector head: 65 logits per 8x8 cell (64 pixel positions + a "no keypoint" dustbin); softmax,
    drop the dustbin, pixel shuffle back to full resolution;
  - a descriptor head: 256-D coarse descriptors, L2-normalised, bilinearly sampled at each keypoint
    and L2-normalised again.
Keypoints: local maxima of the heatmap (non-maximum suppression in a (2r+1)^2 window), away from the
border, above a confidence threshold, the top k by score. Single scale: every keypoint is at octave 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slam.errors import SlamInputError
from slam.features.base import Features, empty_features, to_gray
from slam.features.torch_support import gray_batch, load_state_dict, per_shape_batches, select_device

WEIGHTS_ENV = "SLAM_SUPERPOINT_WEIGHTS"
WEIGHTS_HINT = (
    "get Magic Leap's superpoint_v1.pth (github.com/magicleap/SuperPointPretrainedNetwork, "
    f"weights/superpoint_v1.pth; non-commercial licence) and give its path in features.weights "
    f"or {WEIGHTS_ENV}"
)

_ENCODER = (
    ("conv1a", 1, 64),
    ("conv1b", 64, 64),
    ("conv2a", 64, 64),
    ("conv2b", 64, 64),
    ("conv3a", 64, 128),
    ("conv3b", 128, 128),
    ("conv4a", 128, 128),
    ("conv4b", 128, 128),
)
# name, input channels, output channels, kernel size
_HEADS = (("convPa", 128, 256, 3), ("convPb", 256, 65, 1), ("convDa", 128, 256, 3), ("convDb", 256, 256, 1))


class SuperPointNet(nn.Module):
    """The published architecture, with Magic Leap's parameter names (so their state_dict loads as is)."""

    def __init__(self):
        super().__init__()
        for name, c_in, c_out in _ENCODER:
            setattr(self, name, nn.Conv2d(c_in, c_out, 3, padding=1))
        for name, c_in, c_out, k in _HEADS:
            setattr(self, name, nn.Conv2d(c_in, c_out, k, padding=k // 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,1,H,W) in [0,1] -> detector logits (B,65,H/8,W/8), raw descriptors (B,256,H/8,W/8)."""
        for i, (name, _, _) in enumerate(_ENCODER):
            x = F.relu(getattr(self, name)(x))
            if i in (1, 3, 5):
                x = F.max_pool2d(x, 2, 2)
        logits = self.convPb(F.relu(self.convPa(x)))
        descriptors = self.convDb(F.relu(self.convDa(x)))
        return logits, descriptors


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the v1 checkpoint (24 tensors)."""
    return {k: tuple(v.shape) for k, v in SuperPointNet().state_dict().items()}


def resolve_weights(configured: str | None) -> Path:
    path = configured or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise SlamInputError(f"SuperPoint needs its weights: {WEIGHTS_HINT}")
    return Path(path).expanduser()


class SuperPointExtractor:
    scale_factor = 1.0
    n_levels = 1
    descriptor_size = 256
    descriptor_dtype = np.dtype(np.float32)

    def __init__(
        self,
        weights: str | Path | None = None,
        n_features: int = 1000,
        device: str = "auto",
        threshold: float = 0.005,
        nms_radius: int = 4,
        border: int = 4,
    ):
        path = resolve_weights(None if weights is None else str(weights))
        self.device = select_device(device)
        self.net = SuperPointNet()
        self.net.load_state_dict(load_state_dict(path, expected_shapes(), "SuperPoint", WEIGHTS_HINT))
        # channels-last convolutions measured ~30% faster on this CPU (oneDNN)
        self.net.eval().to(self.device, memory_format=torch.channels_last)
        self.n_features = n_features
        self.threshold = threshold
        self.nms_radius = nms_radius
        self.border = border

    def extract(self, image: np.ndarray) -> Features:
        return self.extract_batch([image])[0]

    def extract_batch(self, images: list[np.ndarray]) -> list[Features]:
        """One network pass per group of same-sized images."""
        grays = [to_gray(image) for image in images]
        return per_shape_batches(grays, self._run)

    @torch.inference_mode()
    def _run(self, grays: list[np.ndarray]) -> list[Features]:
        logits, coarse = self.net(gray_batch(grays, self.device).contiguous(memory_format=torch.channels_last))
        heat = F.pixel_shuffle(F.softmax(logits, dim=1)[:, :-1], 8)[:, 0]  # (B, 8*H/8, 8*W/8)
        keep = self._candidates(heat)
        coarse = F.normalize(coarse, dim=1)
        results = []
        for b in range(heat.shape[0]):
            ys, xs = torch.nonzero(keep[b], as_tuple=True)
            scores = heat[b, ys, xs]
            if len(scores) > self.n_features:
                top = torch.topk(scores, self.n_features).indices
                ys, xs, scores = ys[top], xs[top], scores[top]
            results.append(self._features(xs, ys, scores, coarse[b]))
        return results

    def _candidates(self, heat: torch.Tensor) -> torch.Tensor:
        """Local maxima above the threshold, away from the border; ties broken so kept points are > r apart."""
        r = self.nms_radius
        window = 2 * r + 1
        peak = (heat == F.max_pool2d(heat[:, None], window, 1, r)[:, 0]) & (heat > self.threshold)
        # Two peaks within r of each other must have equal scores: keep only the one with the larger index.
        # (float32 holds pixel indices exactly up to 2^24 pixels)
        index = torch.arange(1, heat[0].numel() + 1, device=heat.device, dtype=torch.float32).view(heat.shape[1:])
        tagged = torch.where(peak, index, torch.zeros((), device=heat.device))
        peak &= tagged == F.max_pool2d(tagged[:, None], window, 1, r)[:, 0]
        b = self.border
        if b > 0:
            peak[:, :b] = peak[:, -b:] = False
            peak[:, :, :b] = peak[:, :, -b:] = False
        return peak

    def _features(self, xs: torch.Tensor, ys: torch.Tensor, scores: torch.Tensor, coarse: torch.Tensor) -> Features:
        if len(xs) == 0:
            return empty_features(self.descriptor_size, self.descriptor_dtype)
        descriptors = sample_descriptors(coarse, xs.float(), ys.float())
        n = len(xs)
        keypoints = torch.stack([xs, ys], dim=1).float().cpu().numpy()
        return Features(
            keypoints,
            np.zeros(n, np.int32),
            np.zeros(n, np.float32),
            scores.float().cpu().numpy(),
            descriptors.cpu().numpy(),
        )


def sample_descriptors(coarse: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """Bilinear samples (N,C) of a (C,h,w) cell map at pixels (xs, ys), L2-normalised.

    Cell (i, j) describes the pixels it covers, centred at (cell*j + (cell-1)/2, cell*i + (cell-1)/2).
    """
    _, h, w = coarse.shape
    u = (xs - (cell - 1) / 2) / cell  # continuous cell coordinates
    v = (ys - (cell - 1) / 2) / cell
    grid = torch.stack([2 * u / max(w - 1, 1) - 1, 2 * v / max(h - 1, 1) - 1], dim=1).view(1, 1, -1, 2)
    samples = F.grid_sample(coarse[None], grid.to(coarse.dtype), mode="bilinear", align_corners=True)
    return F.normalize(samples[0, :, 0].t(), dim=1)
