"""Matching through the direct index: only descriptors under the same vocabulary node are compared.

ORB-SLAM's SearchByBoW: two images' keypoints are candidate matches when their words share the ancestor
node at the direct-index level (`Vocabulary.transform(...).nodes`), which replaces an all-pairs search by
many small ones. This module keeps the descriptor part (nearest, ratio test, one match per keypoint);
map-point bookkeeping and the rotation-consistency check belong to the caller.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from slam.matching import _distance, as_kernel


@nb.njit(cache=True, nogil=True)
def _match_by_nodes(nodes_a, words_a, order_b, nodes_b_sorted, words_b, max_distance, ratio):
    n = nodes_a.shape[0]
    match = np.full(n, -1, np.int64)
    dist = np.full(n, np.inf)
    for i in range(n):
        lo = np.searchsorted(nodes_b_sorted, nodes_a[i], side="left")
        hi = np.searchsorted(nodes_b_sorted, nodes_a[i], side="right")
        best, second, best_j = np.inf, np.inf, -1
        for s in range(lo, hi):
            j = order_b[s]
            d = _distance(words_a[i], words_b[j])
            if d < best:
                second, best, best_j = best, d, j
            elif d < second:
                second = d
        if best <= max_distance and best < ratio * second:
            match[i] = best_j
            dist[i] = best
    return match, dist


def match_by_nodes(
    nodes_a: np.ndarray,
    descriptors_a: np.ndarray,
    nodes_b: np.ndarray,
    descriptors_b: np.ndarray,
    max_distance: float,
    ratio: float = 0.75,
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ia, ib) of descriptors matched within their shared direct-index node.

    Each keypoint of A takes its nearest keypoint of B under the same node when that is within
    `max_distance` (Hamming or L2, see `slam.matching.thresholds`) and closer than `ratio` times the second
    nearest there; a keypoint of B claimed by several keeps only its nearest claimant.
    """
    if len(nodes_a) == 0 or len(nodes_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nodes_b = np.asarray(nodes_b, np.int64)
    order_b = np.argsort(nodes_b, kind="stable")
    match, dist = _match_by_nodes(
        np.asarray(nodes_a, np.int64),
        as_kernel(descriptors_a),
        order_b,
        nodes_b[order_b],
        as_kernel(descriptors_b),
        float(max_distance),
        float(ratio),
    )
    ia = np.flatnonzero(match >= 0)
    if len(ia) == 0:
        return ia.astype(np.int64), ia.astype(np.int64)
    ia = ia[np.lexsort((dist[ia], match[ia]))]  # by keypoint of B, nearest claimant first
    first = np.r_[True, match[ia][1:] != match[ia][:-1]]
    ia = np.sort(ia[first])
    return ia, match[ia]
