"""Feature extractors by name; the registry builds one from the `features` config section."""

from __future__ import annotations

from collections.abc import Callable

from slam.config import FeaturesConfig
from slam.errors import SlamInputError
from slam.features.base import Extractor, Features, extract_batch, level_scales


def _orb(cfg: FeaturesConfig) -> Extractor:
    from slam.features.orb import OrbExtractor

    return OrbExtractor(cfg.n_features, cfg.scale_factor, cfg.n_levels, cfg.fast_threshold, cfg.min_fast_threshold,
                        threads=cfg.threads)


def _sift(cfg: FeaturesConfig, root: bool = False) -> Extractor:
    from slam.features.sift import SiftExtractor

    return SiftExtractor(cfg.n_features, root, cfg.scale_factor, cfg.n_levels)


def _rootsift(cfg: FeaturesConfig) -> Extractor:
    return _sift(cfg, root=True)


def _superpoint(cfg: FeaturesConfig) -> Extractor:
    from slam.features.superpoint import SuperPointExtractor  # imports torch: only when asked for

    return SuperPointExtractor(cfg.weights, cfg.n_features, cfg.device)


def _xfeat(cfg: FeaturesConfig) -> Extractor:
    from slam.features.xfeat import XFeatExtractor  # imports torch and kornia: only when asked for

    return XFeatExtractor(cfg.weights, cfg.n_features, cfg.device)


EXTRACTORS: dict[str, Callable[[FeaturesConfig], Extractor]] = {
    "orb": _orb, "sift": _sift, "rootsift": _rootsift, "superpoint": _superpoint, "xfeat": _xfeat,
}


def create_extractor(cfg: FeaturesConfig) -> Extractor:
    factory = EXTRACTORS.get(cfg.type)
    if factory is None:
        raise SlamInputError(f"unknown feature type '{cfg.type}' (known: {', '.join(sorted(EXTRACTORS))})")
    return factory(cfg)


__all__ = ["EXTRACTORS", "Extractor", "Features", "create_extractor", "extract_batch", "level_scales"]
