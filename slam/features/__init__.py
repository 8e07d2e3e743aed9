"""Feature extractors by name; the registry builds one from the `features` config section."""

from __future__ import annotations

from collections.abc import Callable

from slam.config import FeaturesConfig
from slam.errors import SlamInputError
from slam.features.base import Extractor, Features, level_scales


def _orb(cfg: FeaturesConfig) -> Extractor:
    from slam.features.orb import OrbExtractor

    return OrbExtractor(cfg.n_features, cfg.scale_factor, cfg.n_levels, cfg.fast_threshold, cfg.min_fast_threshold)


EXTRACTORS: dict[str, Callable[[FeaturesConfig], Extractor]] = {"orb": _orb}


def create_extractor(cfg: FeaturesConfig) -> Extractor:
    factory = EXTRACTORS.get(cfg.type)
    if factory is None:
        raise SlamInputError(f"unknown feature type '{cfg.type}' (known: {', '.join(sorted(EXTRACTORS))})")
    return factory(cfg)


__all__ = ["EXTRACTORS", "Extractor", "Features", "create_extractor", "level_scales"]
