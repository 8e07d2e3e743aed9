"""Hierarchical k-means (a vocabulary tree) over binary or float descriptors.

Binary descriptors are clustered as uint64 words under the Hamming distance, with each centre the
bitwise majority of its members; float descriptors under the Euclidean distance with mean centres.
Both are seeded by k-means++. The kernels take the layout `slam.matching.as_kernel` gives and compare
with its `_distance` (Hamming or L2, chosen at compile time from the dtype).

The tree is built breadth first, so node ids grow level by level, every node's children have
consecutive ids, and the whole tree is described by each node's number of children (see `Tree`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numba as nb
import numpy as np

from slam.matching import _distance

MAX_ITERATIONS = 10  # Lloyd iterations per node: the tree's lower levels refine what the upper ones miss
RESTARTS = 3  # k-means runs per node, the best kept: one run lands in a poor local minimum too often


@dataclass(frozen=True)
class Tree:
    """A vocabulary tree: node 0 is the root (its centre row is unused); leaves are the words."""

    centres: np.ndarray  # (n_nodes, W) in the kernel layout: uint64 words (binary) or float32
    child_count: np.ndarray  # (n_nodes,) int32; the children of node p are child_start[p] + [0, child_count[p])

    @property
    def child_start(self) -> np.ndarray:
        return (1 + np.concatenate(([0], np.cumsum(self.child_count)[:-1]))).astype(np.int64)


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})  # lets float distance sums vectorise
def assign(data, centres):
    """Index of the nearest centre for each row, and its distance."""
    n = data.shape[0]
    labels = np.empty(n, np.int64)
    dist = np.empty(n, np.float64)
    for i in range(n):
        best, best_c = np.inf, 0
        for c in range(centres.shape[0]):
            d = _distance(data[i], centres[c])
            if d < best:
                best, best_c = d, c
        labels[i] = best_c
        dist[i] = best
    return labels, dist


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _distances_to(data, centre):
    out = np.empty(data.shape[0], np.float64)
    for i in range(data.shape[0]):
        out[i] = _distance(data[i], centre)
    return out


@nb.njit(cache=True, nogil=True)
def _majority_centres(words, labels, k):
    """Per cluster, each bit set where more than half of its members have it set."""
    n_words = words.shape[1]
    counts = np.zeros((k, n_words * 64), np.int64)
    sizes = np.zeros(k, np.int64)
    for i in range(words.shape[0]):
        c = labels[i]
        sizes[c] += 1
        for w in range(n_words):
            x = words[i, w]
            for b in range(64):
                counts[c, w * 64 + b] += (x >> np.uint64(b)) & np.uint64(1)
    out = np.zeros((k, n_words), np.uint64)
    for c in range(k):
        for w in range(n_words):
            acc = np.uint64(0)
            for b in range(64):
                if 2 * counts[c, w * 64 + b] > sizes[c]:
                    acc |= np.uint64(1) << np.uint64(b)
            out[c, w] = acc
    return out, sizes


@nb.njit(cache=True, nogil=True)
def _mean_centres(data, labels, k):
    sums = np.zeros((k, data.shape[1]), np.float64)
    sizes = np.zeros(k, np.int64)
    for i in range(data.shape[0]):
        c = labels[i]
        sizes[c] += 1
        for j in range(data.shape[1]):
            sums[c, j] += data[i, j]
    out = np.zeros((k, data.shape[1]), np.float32)
    for c in range(k):
        if sizes[c] > 0:
            for j in range(data.shape[1]):
                out[c, j] = sums[c, j] / sizes[c]
    return out, sizes


def _update(data: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if data.dtype == np.uint64:
        return _majority_centres(data, labels, k)
    return _mean_centres(data, labels, k)


def seed_kmeanspp(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: each next seed is, of a few rows drawn with probability proportional to their squared
    distance to the nearest seed so far, the one that lowers the total of those squared distances most
    (the greedy draw rarely puts two seeds in one tight cluster). Returns up to k distinct row indices,
    fewer when every remaining row coincides with a seed."""
    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(len(data)))]
    d2 = _distances_to(data, data[chosen[0]]) ** 2
    while len(chosen) < k:
        cumulative = np.cumsum(d2)
        if cumulative[-1] <= 0:
            break
        picks = np.minimum(
            np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right"), len(data) - 1
        )
        options = [np.minimum(d2, _distances_to(data, data[p]) ** 2) for p in picks]
        best = int(np.argmin([o.sum() for o in options]))
        chosen.append(int(picks[best]))
        d2 = options[best]
    return np.array(chosen, np.int64)


def kmeans(
    data: np.ndarray, k: int, rng: np.random.Generator, restarts: int = RESTARTS, max_iterations: int = MAX_ITERATIONS
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from k-means++ seeds, best of `restarts` runs by total distance.

    Returns (centres (m,W), labels (N,) in [0, m)) with m <= k and no empty cluster.
    """
    best = None
    for _ in range(restarts):
        centres, labels, cost = _lloyd(data, data[seed_kmeanspp(data, k, rng)].copy(), max_iterations)
        if best is None or cost < best[2]:
            best = centres, labels, cost
    centres, labels, _ = best
    used, labels = np.unique(labels, return_inverse=True)
    return centres[used], labels.astype(np.int64)


def _lloyd(data: np.ndarray, centres: np.ndarray, max_iterations: int) -> tuple[np.ndarray, np.ndarray, float]:
    labels, dist = assign(data, centres)
    for _ in range(max_iterations):
        new_centres, sizes = _update(data, labels, len(centres))
        # An emptied cluster keeps its old centre: it may win members back in the next assignment.
        centres = np.where((sizes > 0)[:, None], new_centres, centres)
        new_labels, dist = assign(data, centres)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return centres, labels, float(dist.sum())


def build_tree(data: np.ndarray, k: int, levels: int, rng: np.random.Generator) -> Tree:
    """Cluster `data` (kernel layout) into a tree of branching factor <= k and depth <= levels.

    A node is split while it is above the leaf level and holds more than one distinct descriptor; a node
    holding k or fewer distinct descriptors gets one child (a leaf) per distinct descriptor.
    """
    centres = [np.zeros((1, data.shape[1]), data.dtype)]
    counts = [0]
    n_nodes = 1
    queue = deque([(0, np.arange(len(data)), 0)])
    while queue:
        node, members, depth = queue.popleft()
        if depth == levels or len(members) <= 1:
            continue
        child_centres, labels = _split(data[members], k, rng)
        if len(child_centres) <= 1:  # all members identical: the node stays a leaf
            continue
        counts[node] = len(child_centres)
        for c in range(len(child_centres)):
            queue.append((n_nodes + c, members[labels == c], depth + 1))
        n_nodes += len(child_centres)
        centres.append(child_centres)
        counts.extend([0] * len(child_centres))
    return Tree(np.concatenate(centres), np.array(counts, np.int32))


def _split(sub: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if len(sub) <= k:
        distinct, inverse = np.unique(sub, axis=0, return_inverse=True)
        return distinct, inverse.reshape(-1).astype(np.int64)
    return kmeans(sub, k, rng)  # k-means++ seeds are distinct, so fewer than k distinct rows give fewer clusters


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})  # lets float distance sums vectorise
def descend(data, centres, child_start, child_count):
    """The leaf node reached by each row when it goes down the tree to the nearest child at every level."""
    n = data.shape[0]
    leaves = np.empty(n, np.int64)
    for i in range(n):
        node = 0
        while child_count[node] > 0:
            s = child_start[node]
            best, best_node = np.inf, s
            for c in range(s, s + child_count[node]):
                d = _distance(data[i], centres[c])
                if d < best:
                    best, best_node = d, c
            node = best_node
        leaves[i] = node
    return leaves
