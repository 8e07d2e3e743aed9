"""Keyframe place recognition for loop closing and relocalisation: bag-of-words vectors of the keyframes
and queries against them (slam.place holds the vocabulary and the scoring)."""

from __future__ import annotations

import threading

import numpy as np

from slam.place.bow import BowVector, score
from slam.place.vocabulary import Vocabulary


class KeyframePlaces:
    """Thread-safe: local mapping / loop closing add keyframes while tracking queries when lost."""

    def __init__(self, vocabulary: Vocabulary, is_alive=None):
        self.vocabulary = vocabulary
        self.is_alive = is_alive or (lambda kf_id: True)
        self._bows: dict[int, BowVector] = {}
        self._lock = threading.Lock()

    def bow(self, descriptors: np.ndarray) -> BowVector:
        return self.vocabulary.bow(descriptors)

    def add(self, kf_id: int, descriptors: np.ndarray) -> None:
        vector = self.bow(descriptors)
        with self._lock:
            self._bows[kf_id] = vector

    def remove(self, kf_id: int) -> None:
        with self._lock:
            self._bows.pop(kf_id, None)

    def score(self, a: int, b: int) -> float:
        with self._lock:
            va, vb = self._bows.get(a), self._bows.get(b)
        return 0.0 if va is None or vb is None else score(va, vb)

    def query(self, descriptors: np.ndarray, max_results: int, exclude: set[int] = frozenset()
              ) -> tuple[list[int], list[float]]:
        """Keyframes most similar to the descriptors' image, best first."""
        vector = self.bow(descriptors)
        with self._lock:
            items = [(k, v) for k, v in self._bows.items() if k not in exclude]
        scored = [(score(vector, v), k) for k, v in items if self.is_alive(k)]
        scored.sort(key=lambda sk: (-sk[0], sk[1]))
        best = [(k, s) for s, k in scored[:max_results] if s > 0]
        return [k for k, _ in best], [s for _, s in best]

    def candidates(self, descriptors: np.ndarray, max_results: int) -> list[int]:
        return self.query(descriptors, max_results)[0]
