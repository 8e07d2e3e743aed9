"""What the PyTorch extractors share: device choice and checked checkpoint loading.

Only the learned extractors import this module, so the ORB path never loads torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slam.errors import SlamInputError

DEVICES = ("auto", "cpu", "cuda")


def select_device(name: str) -> torch.device:
    """'auto' takes CUDA when a GPU is present, else the CPU; asking for CUDA without one is an input error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise SlamInputError(f"features.device must be one of {', '.join(DEVICES)} or cuda:N, got '{name}'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SlamInputError(f"features.device is '{name}' but torch sees no CUDA device")
    return torch.device(name)


def load_state_dict(path: Path, expected: dict[str, tuple[int, ...]], what: str, hint: str) -> dict[str, torch.Tensor]:
    """A plain state_dict from `path` whose keys and shapes are exactly `expected`; else a one-line error + hint."""
    if not path.is_file():
        raise SlamInputError(f"{what} weights not found; {hint}", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise SlamInputError(f"cannot read {what} weights ({type(exc).__name__}); {hint}", path) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SlamInputError(f"not a {what} state_dict of tensors; {hint}", path)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        raise SlamInputError(f"not a {what} checkpoint ({detail}); {hint}", path)
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise SlamInputError(
                f"not a {what} checkpoint ({key} has shape {tuple(state[key].shape)}, expected {shape}); {hint}", path
            )
    return state


def gray_batch(images: list, device: torch.device) -> torch.Tensor:
    """(B,1,H,W) float32 in [0,1] from same-sized uint8 gray images."""
    stack = np.stack(images).astype(np.float32) / 255.0
    return torch.from_numpy(stack)[:, None].to(device)


def per_shape_batches(grays: list[np.ndarray], run) -> list:
    """`run` (a list of same-sized images -> one result each) applied per group of equal image size, as a
    network batch needs; results come back in the input order."""
    out: list = [None] * len(grays)
    for shape in {g.shape for g in grays}:
        index = [i for i, g in enumerate(grays) if g.shape == shape]
        for i, result in zip(index, run([grays[i] for i in index])):
            out[i] = result
    return out
