"""Sparse bag-of-words vectors and DBoW2's L1 similarity score.

A BowVector holds the words an image contains (sorted, unique) and their TF-IDF weights, normalised to
sum 1. Words whose IDF is 0 (seen in every training image) carry no information and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BowVector:
    words: np.ndarray  # (M,) int32 word ids, sorted and unique
    weights: np.ndarray  # (M,) float32 TF-IDF weights > 0, summing to 1 (or empty)

    def __len__(self) -> int:
        return len(self.words)

    @staticmethod
    def empty() -> BowVector:
        return BowVector(np.zeros(0, np.int32), np.zeros(0, np.float32))

    @staticmethod
    def from_words(words: np.ndarray, idf: np.ndarray) -> BowVector:
        """TF-IDF vector of an image whose descriptors fell into `words` ((N,) ids into `idf`)."""
        ids, counts = np.unique(np.asarray(words), return_counts=True)
        weights = counts * idf[ids]  # term frequency (the 1/N factor cancels in the normalisation) times IDF
        keep = weights > 0
        return _normalised(ids[keep].astype(np.int32), weights[keep])

    def dense(self, n_words: int) -> np.ndarray:
        """The vector as a dense (n_words,) float64 array (for tests and small problems)."""
        out = np.zeros(n_words, np.float64)
        out[self.words] = self.weights
        return out


def _normalised(words: np.ndarray, weights: np.ndarray) -> BowVector:
    total = float(weights.sum())
    if total <= 0:
        return BowVector.empty()
    return BowVector(words, (weights / total).astype(np.float32))


def score(a: BowVector, b: BowVector) -> float:
    """DBoW2's L1 score s = 1 - 0.5 * |a/|a| - b/|b||_1, in [0, 1] (1: identical word distributions).

    For non-negative vectors of L1 norm 1, |a - b|_1 = 2 - 2 * sum(min(a_w, b_w)), so s is the sum over
    the common words of the smaller weight: only the intersection of the two word lists is visited.
    """
    if len(a) == 0 or len(b) == 0:
        return 0.0
    _, ia, ib = np.intersect1d(a.words, b.words, assume_unique=True, return_indices=True)
    # Renormalised in float64 so vectors that sum to 1 only up to float32 rounding still score in [0, 1].
    wa = a.weights.astype(np.float64) / a.weights.sum(dtype=np.float64)
    wb = b.weights.astype(np.float64) / b.weights.sum(dtype=np.float64)
    return float(np.minimum(wa[ia], wb[ib]).sum())
