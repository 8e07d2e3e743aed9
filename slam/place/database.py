"""Keyframe database: an inverted index (word -> keyframes holding it) for loop and relocalization candidates.

A query visits only the postings of the query's own words, scores every keyframe met with DBoW2's L1
score (the sum over common words of the smaller weight, see `slam.place.bow.score`) and keeps, as
ORB-SLAM does, only the keyframes sharing at least `min_common_ratio` (0.8) of the largest number of
common words. `group_scores` then adds ORB-SLAM's covisibility step, which needs the map.

Thread-safe: one lock guards the index; loop closing, relocalization and mapping may call it from
different threads. Keyframe ids are any non-negative integers; internally each keyframe has a dense slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from slam.place.bow import BowVector


@dataclass(frozen=True)
class Candidates:
    """Keyframes ranked by score, best first."""

    kf_ids: np.ndarray  # (M,) int64
    scores: np.ndarray  # (M,) float64 (L1 score for a query; accumulated group score from group_scores)
    common: np.ndarray  # (M,) int64 words shared with the query

    def __len__(self) -> int:
        return len(self.kf_ids)

    def top(self, n: int | None) -> Candidates:
        return self if n is None else Candidates(self.kf_ids[:n], self.scores[:n], self.common[:n])


def _ranked(kf_ids: np.ndarray, scores: np.ndarray, common: np.ndarray) -> Candidates:
    order = np.lexsort((kf_ids, -scores))  # best score first; ties by keyframe id, for reproducible runs
    return Candidates(kf_ids[order].astype(np.int64), scores[order].astype(np.float64), common[order].astype(np.int64))


class KeyframeDatabase:
    def __init__(self, n_words: int):
        self.n_words = int(n_words)
        self._lock = threading.Lock()
        self._slot_of: dict[int, int] = {}
        self._bows: dict[int, BowVector] = {}
        self._slot_kf = np.full(16, -1, np.int64)  # keyframe id in each slot, -1 where free
        self._free: list[int] = []
        # Postings per word: the slots holding it and their weights, in arrays grown by doubling (appending
        # to a plain numpy array per word would copy it every time), of which the first _count[w] are used.
        self._slots: list[np.ndarray | None] = [None] * self.n_words  # int32
        self._weights: list[np.ndarray | None] = [None] * self.n_words  # float32
        self._count = [0] * self.n_words

    def __len__(self) -> int:
        with self._lock:
            return len(self._slot_of)

    def __contains__(self, kf_id: int) -> bool:
        with self._lock:
            return int(kf_id) in self._slot_of

    def bow(self, kf_id: int) -> BowVector | None:
        """The vector stored for a keyframe (for scores against its covisible keyframes), or None."""
        with self._lock:
            return self._bows.get(int(kf_id))

    def add(self, kf_id: int, bow: BowVector) -> None:
        """Index keyframe `kf_id` under its words; adding an id again replaces its vector."""
        kf_id = int(kf_id)
        if kf_id < 0:
            raise ValueError(f"keyframe id {kf_id} is negative")
        if len(bow) and int(bow.words[-1]) >= self.n_words:
            raise ValueError(f"word {int(bow.words[-1])} outside the vocabulary's {self.n_words} words")
        with self._lock:
            if kf_id in self._slot_of:
                self._remove(kf_id)
            slot = self._take_slot(kf_id)
            self._bows[kf_id] = bow
            for w, weight in zip(bow.words.tolist(), bow.weights.tolist()):
                n = self._count[w]
                if n == 0 or n == len(self._slots[w]):
                    self._grow(w)
                self._slots[w][n] = slot
                self._weights[w][n] = weight
                self._count[w] = n + 1

    def remove(self, kf_id: int) -> None:
        """Forget a keyframe (culled); unknown ids are ignored."""
        with self._lock:
            if int(kf_id) in self._slot_of:
                self._remove(int(kf_id))

    def query(
        self,
        bow: BowVector,
        max_results: int | None = None,
        exclude: Iterable[int] = (),
        min_score: float = 0.0,
        min_common_ratio: float = 0.8,
    ) -> Candidates:
        """Keyframes sharing words with `bow`, best L1 score first.

        Keyframes in `exclude` (for loop detection: the query's own covisible keyframes) are skipped before
        anything else. Of the rest, only those sharing at least `min_common_ratio` times the largest number
        of common words are scored and kept (ORB-SLAM's 0.8), then those scoring below `min_score`
        dropped; at most `max_results` are returned.
        """
        with self._lock:
            slots, common, score = self._accumulate(bow)
            kf_ids = self._slot_kf[slots]
            excluded = [self._slot_of[k] for k in map(int, exclude) if k in self._slot_of]
        keep = ~np.isin(slots, excluded)
        slots, kf_ids, common, score = slots[keep], kf_ids[keep], common[keep], score[keep]
        if len(slots) == 0:
            return _ranked(kf_ids, score, common)
        keep = (common >= min_common_ratio * common.max()) & (score >= min_score)
        return _ranked(kf_ids[keep], score[keep], common[keep]).top(max_results)

    def _accumulate(self, bow: BowVector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slots sharing a word with `bow`, their common-word counts and L1 scores (lock held)."""
        postings = [
            (self._slots[w][: self._count[w]], self._weights[w][: self._count[w]], q)
            for w, q in zip(bow.words.tolist(), bow.weights.tolist())
            if self._count[w]
        ]
        if not postings:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
        slots = np.concatenate([p[0] for p in postings])
        weights = np.concatenate([p[1] for p in postings])
        query = np.repeat(np.array([p[2] for p in postings], np.float32), [len(p[0]) for p in postings])
        n = len(self._slot_kf)
        common = np.bincount(slots, minlength=n)
        score = np.bincount(slots, weights=np.minimum(query, weights), minlength=n)
        hit = np.flatnonzero(common)
        return hit, common[hit], score[hit]

    def _take_slot(self, kf_id: int) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._slot_of)
            if slot == len(self._slot_kf):
                self._slot_kf = np.concatenate((self._slot_kf, np.full(len(self._slot_kf), -1, np.int64)))
        self._slot_kf[slot] = kf_id
        self._slot_of[kf_id] = slot
        return slot

    def _grow(self, w: int) -> None:
        n = self._count[w]
        slots, weights = np.empty(max(4, 2 * n), np.int32), np.empty(max(4, 2 * n), np.float32)
        if n:
            slots[:n], weights[:n] = self._slots[w][:n], self._weights[w][:n]
        self._slots[w], self._weights[w] = slots, weights

    def _remove(self, kf_id: int) -> None:
        slot = self._slot_of.pop(kf_id)
        bow = self._bows.pop(kf_id)
        for w in bow.words.tolist():
            n = self._count[w] - 1
            slots, weights = self._slots[w], self._weights[w]
            i = int(np.flatnonzero(slots[: n + 1] == slot)[0])
            slots[i], weights[i] = slots[n], weights[n]  # the last posting fills the gap
            self._count[w] = n
            if n == 0:
                self._slots[w] = self._weights[w] = None
        self._slot_kf[slot] = -1
        self._free.append(slot)


def group_scores(
    candidates: Candidates,
    neighbours: Callable[[int], Iterable[int]],
    min_score: float = 0.0,
    retain_ratio: float = 0.75,
) -> Candidates:
    """ORB-SLAM's covisibility step over a query's candidates (DetectLoopCandidates / DetectRelocalizationCandidates).

    Each candidate scoring at least `min_score` seeds a group: itself and `neighbours(kf_id)` (ORB-SLAM: its
    10 best covisible keyframes). The group's score is the sum of the query scores of its members that are
    themselves candidates (any score), and the group is represented by its best-scoring member. Groups
    scoring at least `retain_ratio` (0.75) times the best group are returned as (representative keyframe,
    group score), best first, each keyframe once. For loop detection, `min_score` is the lowest score of
    the query keyframe against its own covisible keyframes; for relocalization, 0.
    """
    score_of = dict(zip(candidates.kf_ids.tolist(), candidates.scores.tolist()))
    common_of = dict(zip(candidates.kf_ids.tolist(), candidates.common.tolist()))
    best_of_group: dict[int, float] = {}
    for kf, s in score_of.items():
        if s < min_score:
            continue
        total, best, best_score = s, kf, s
        for other in set(map(int, neighbours(kf))) - {kf}:
            other_score = score_of.get(other)
            if other_score is not None:
                total += other_score
                if other_score > best_score:
                    best, best_score = other, other_score
        best_of_group[best] = max(total, best_of_group.get(best, 0.0))
    if not best_of_group:
        return _ranked(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    threshold = retain_ratio * max(best_of_group.values())
    kept = [(kf, total) for kf, total in best_of_group.items() if total >= threshold]
    kf_ids = np.array([kf for kf, _ in kept], np.int64)
    return _ranked(kf_ids, np.array([t for _, t in kept]), np.array([common_of[k] for k in kf_ids.tolist()]))
