"""Keyframe place recognition for loop closing and relocalisation: the keyframes' bag-of-words vectors in
an inverted-index database (slam.place holds the vocabulary, the scoring and the database)."""

from __future__ import annotations

import numpy as np

from slam.place.bow import score
from slam.place.database import Candidates, KeyframeDatabase, group_scores
from slam.place.vocabulary import Vocabulary


class KeyframePlaces:
    """Thread-safe (the database has its lock): mapping / loop closing add keyframes while tracking queries."""

    def __init__(self, vocabulary: Vocabulary, is_alive=None):
        self.vocabulary = vocabulary
        self.is_alive = is_alive or (lambda kf_id: True)
        self.database = KeyframeDatabase(vocabulary.n_words)

    def add(self, kf_id: int, descriptors: np.ndarray) -> None:
        self.database.add(kf_id, self.vocabulary.bow(descriptors))

    def remove(self, kf_id: int) -> None:
        self.database.remove(kf_id)

    def score(self, a: int, b: int) -> float:
        va, vb = self.database.bow(a), self.database.bow(b)
        return 0.0 if va is None or vb is None else score(va, vb)

    def query(self, descriptors: np.ndarray, max_results: int, exclude: set[int] = frozenset()
              ) -> tuple[list[int], list[float]]:
        """Living keyframes most similar to the descriptors' image, best first (ORB-SLAM's common-words filter)."""
        found = self._living_matches(descriptors, exclude)
        best = np.flatnonzero(found.scores > 0)[:max_results]
        return found.kf_ids[best].tolist(), found.scores[best].tolist()

    def loop_candidates(self, descriptors: np.ndarray, min_score: float, exclude: set[int], neighbours
                        ) -> list[int]:
        """ORB-SLAM's DetectLoopCandidates: keyframes scoring at least `min_score`, each standing for its
        covisible group, kept when the group scores at least 0.75 of the best group; best first."""
        return group_scores(self._living_matches(descriptors, exclude), neighbours, min_score=min_score
                            ).kf_ids.tolist()

    def _living_matches(self, descriptors: np.ndarray, exclude: set[int]) -> Candidates:
        """The database's candidates for the descriptors' image, culled keyframes left out."""
        found = self.database.query(self.vocabulary.bow(descriptors), exclude=exclude)
        alive = np.array([self.is_alive(int(k)) for k in found.kf_ids], bool)
        return Candidates(found.kf_ids[alive], found.scores[alive], found.common[alive])

    def candidates(self, descriptors: np.ndarray, max_results: int) -> list[int]:
        return self.query(descriptors, max_results)[0]
