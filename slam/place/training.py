"""Training a vocabulary from image files with the project's feature extractors (`slam vocab train`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from slam.config import FeaturesConfig
from slam.errors import SlamInputError
from slam.features import create_extractor
from slam.io.base import read_image
from slam.io.video import IMAGE_EXTENSIONS
from slam.place.vocabulary import Vocabulary, train_vocabulary


def image_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly, plus the image files inside named folders (not their subfolders), sorted."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p
                for p in item.iterdir()
                if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
            )
            if not found:
                raise SlamInputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder", item)
            paths.extend(found)
        elif item.is_file():
            paths.append(item)
        else:
            raise SlamInputError("no such image file or folder", item)
    if not paths:
        raise SlamInputError("no images given")
    return paths


def extract_descriptors(
    images: Iterable[np.ndarray], features: FeaturesConfig, progress: Callable[[int], None] | None = None
) -> list[np.ndarray]:
    """The descriptors (one (Ni,D) array per image) the configured extractor gives on each image."""
    extractor = create_extractor(features)
    out = []
    for i, image in enumerate(images):
        out.append(extractor.extract(image).descriptors)
        if progress is not None:
            progress(i + 1)
    return out


def train_from_images(
    paths: list[Path],
    features: FeaturesConfig,
    branching: int,
    levels: int,
    max_descriptors: int | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Vocabulary:
    images = (read_image(p, cv2.IMREAD_GRAYSCALE) for p in paths)
    descriptors = extract_descriptors(images, features, progress)
    info = {"trained_on": f"{len(paths)} image files", "features": features.type, "n_features": features.n_features}
    return train_vocabulary(descriptors, branching, levels, max_descriptors, seed, info)
