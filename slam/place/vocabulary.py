"""A vocabulary tree: descriptors -> words, TF-IDF bag-of-words vectors, direct-index nodes; its file format.

File format (version 1): an .npz archive (numpy's zip of .npy arrays, read with allow_pickle=False):

    format_version  int64 scalar, 1
    kind            str scalar: "binary" (uint8 descriptors, Hamming) or "float" (float32, L2)
    branching       int64 scalar k;  levels: int64 scalar L (the root is level 0, the deepest words level L)
    centres         (n_nodes, D) uint8 (binary, D bytes) or float32; nodes in breadth-first order, row 0
                    (the root) unused
    child_count     (n_nodes,) int32: node p's children are the next child_count[p] unused ids, in node
                    order (child_start = 1 + exclusive cumulative sum); nodes without children are the
                    words, numbered in node order
    idf             (n_words,) float32: log(training images / training images containing the word)
    info            str scalar: JSON with how it was trained (images, descriptors, features, seed)

It is written to a temporary file beside the target and renamed over it, so a crash never leaves half a
vocabulary. A missing, corrupt, truncated or incompatible file raises a one-line SlamInputError.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slam.errors import SlamInputError
from slam.matching import as_kernel
from slam.npzfile import read_npz
from slam.place.bow import BowVector
from slam.place.kmeans import Tree, build_tree, descend

FORMAT_VERSION = 1
KINDS = ("binary", "float")
DEFAULT_VOCABULARY = Path(__file__).resolve().parent / "data" / "orb_vocab.npz"
_KEYS = ("format_version", "kind", "branching", "levels", "centres", "child_count", "idf", "info")


@dataclass(frozen=True)
class Transformed:
    """One image's descriptors seen through the vocabulary."""

    bow: BowVector
    words: np.ndarray  # (N,) int64 word id of each descriptor
    nodes: np.ndarray  # (N,) int64 id of its ancestor node at the direct-index level (same node: match candidates)


class Vocabulary:
    """A trained vocabulary tree. Immutable after construction; safe to share between threads."""

    def __init__(
        self,
        tree: Tree,
        idf: np.ndarray,
        kind: str,
        branching: int,
        levels: int,
        info: dict | None = None,
        source: str | Path | None = None,
    ):
        self.tree = tree
        self.idf = np.asarray(idf, np.float32)
        self.kind = kind
        self.branching = int(branching)
        self.levels = int(levels)
        self.info = dict(info or {})
        self.source = None if source is None else str(source)
        self._child_start = tree.child_start
        leaves = np.flatnonzero(tree.child_count == 0)
        self.word_node = leaves.astype(np.int64)  # (n_words,) node id of each word
        self._ancestors = _ancestor_table(tree.child_count, leaves, self.levels)

    @property
    def n_words(self) -> int:
        return len(self.word_node)

    @property
    def n_nodes(self) -> int:
        return len(self.tree.child_count)

    @property
    def descriptor_size(self) -> int:
        """Bytes per descriptor (binary) or dimensions (float)."""
        return self.tree.centres.shape[1] * (8 if self.kind == "binary" else 1)

    @property
    def direct_level(self) -> int:
        """Default level of the direct index: two above the words (ORB-SLAM uses 2 of 6), at least 1."""
        return max(1, self.levels - 2)

    def words(self, descriptors: np.ndarray) -> np.ndarray:
        """Word id (N,) of each descriptor (N,D)."""
        data = self._kernel_input(descriptors)
        if len(data) == 0:
            return np.zeros(0, np.int64)
        leaves = descend(data, self.tree.centres, self._child_start, self.tree.child_count)
        return np.searchsorted(self.word_node, leaves)

    def bow(self, descriptors: np.ndarray) -> BowVector:
        return BowVector.from_words(self.words(descriptors), self.idf)

    def transform(self, descriptors: np.ndarray, level: int | None = None) -> Transformed:
        """Words, BoW vector and direct-index nodes (at `level`, default `direct_level`) of one image."""
        words = self.words(descriptors)
        nodes = self.nodes_at_level(words, self.direct_level if level is None else level)
        return Transformed(BowVector.from_words(words, self.idf), words, nodes)

    def nodes_at_level(self, words: np.ndarray, level: int) -> np.ndarray:
        """Ancestor node id at `level` (0 = root) of each word; a word above that level is its own ancestor."""
        if not 0 <= level <= self.levels:
            raise ValueError(f"level {level} outside 0..{self.levels}")
        return self._ancestors[level][np.asarray(words, np.int64)]

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary (format above) atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        centres = self.tree.centres.view(np.uint8) if self.kind == "binary" else self.tree.centres
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(
                    f,
                    format_version=np.int64(FORMAT_VERSION),
                    kind=np.array(self.kind),
                    branching=np.int64(self.branching),
                    levels=np.int64(self.levels),
                    centres=centres,
                    child_count=self.tree.child_count.astype(np.int32),
                    idf=self.idf,
                    info=np.array(json.dumps(self.info, sort_keys=True)),
                )
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared or packaged vocabulary unreadable to others
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def _kernel_input(self, descriptors: np.ndarray) -> np.ndarray:
        d = np.asarray(descriptors)
        binary = self.kind == "binary"
        ok = (
            d.ndim == 2
            and d.shape[1] == self.descriptor_size
            and (d.dtype == np.uint8 if binary else np.issubdtype(d.dtype, np.floating))
        )
        if not ok:
            want = f"{self.descriptor_size}-byte binary (uint8)" if binary else f"{self.descriptor_size}-D float"
            raise SlamInputError(
                f"the vocabulary is for {want} descriptors, got an array of shape {d.shape} and type {d.dtype}",
                self.source,
            )
        return as_kernel(d)


def _ancestor_table(child_count: np.ndarray, leaves: np.ndarray, levels: int) -> np.ndarray:
    """(levels+1, n_words): the ancestor of each word at each level (the word's node where it is shallower)."""
    parent = np.concatenate(([0], np.repeat(np.arange(len(child_count)), child_count)))
    depth = np.zeros(len(child_count), np.int64)
    for _ in range(levels):  # parents precede children, so depth settles after `levels` passes
        depth[1:] = depth[parent[1:]] + 1
    table = np.empty((levels + 1, len(leaves)), np.int64)
    node = leaves.astype(np.int64)
    for level in range(levels, -1, -1):
        node = np.where(depth[node] > level, parent[node], node)
        table[level] = node
    return table


def train_vocabulary(
    descriptor_sets: list[np.ndarray],
    branching: int = 10,
    levels: int = 5,
    max_descriptors: int | None = None,
    seed: int = 0,
    info: dict | None = None,
) -> Vocabulary:
    """Train a vocabulary from the descriptors of several images (one (Ni,D) array per image).

    Clustering uses at most `max_descriptors` of them (a seeded random subset); the IDF weights count, for
    each word, the images whose descriptors reach it.
    """
    sets = [np.asarray(d) for d in descriptor_sets if len(d)]
    if not sets:
        raise SlamInputError("no descriptors to train a vocabulary on")
    if branching < 2 or levels < 1:
        raise SlamInputError(f"a vocabulary needs k >= 2 and levels >= 1 (got k={branching}, levels={levels})")
    kinds = {"binary" if d.dtype == np.uint8 else "float" for d in sets}
    sizes = {d.shape[1] for d in sets}
    if len(kinds) > 1 or len(sizes) > 1 or any(d.ndim != 2 for d in sets):
        raise SlamInputError("the images' descriptors differ in type or size")
    kind = kinds.pop()
    data = as_kernel(np.concatenate(sets))
    rng = np.random.default_rng(seed)
    if max_descriptors is not None and len(data) > max_descriptors:
        data = data[np.sort(rng.choice(len(data), max_descriptors, replace=False))]
    tree = build_tree(data, branching, levels, rng)
    leaves = np.flatnonzero(tree.child_count == 0)
    if len(leaves) < 2:
        raise SlamInputError("the descriptors are all identical: no vocabulary can be built from them")
    image_count = np.zeros(len(leaves), np.int64)
    for d in sets:
        reached = descend(as_kernel(d), tree.centres, tree.child_start, tree.child_count)
        image_count[np.searchsorted(leaves, np.unique(reached))] += 1
    # A word no training image reaches is weighted as if one image had it (rare, hence informative).
    idf = np.log(len(sets) / np.maximum(image_count, 1)).astype(np.float32)
    info = {
        **(info or {}),
        "images": len(sets),
        "descriptors": int(sum(len(d) for d in sets)),
        "clustered": int(len(data)),
        "seed": seed,
    }
    return Vocabulary(tree, idf, kind, branching, levels, info)


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Read a vocabulary file; None gives the ORB vocabulary shipped with the package."""
    path = Path(path) if path is not None else DEFAULT_VOCABULARY
    arrays = read_npz(path, _KEYS, "vocabulary")
    return _from_arrays(arrays, path)


def _from_arrays(a: dict[str, np.ndarray], path: Path) -> Vocabulary:
    version = _scalar(a, "format_version", path)
    if version != FORMAT_VERSION:
        raise SlamInputError(f"vocabulary format version {version}, this build reads version {FORMAT_VERSION}", path)
    kind = str(a["kind"]) if a["kind"].ndim == 0 else ""
    if kind not in KINDS:
        raise SlamInputError(f"unknown descriptor kind {kind!r} (expected {' or '.join(KINDS)})", path)
    branching, levels = _scalar(a, "branching", path), _scalar(a, "levels", path)
    centres, counts, idf = a["centres"], a["child_count"], a["idf"]
    _check_tree(kind, branching, levels, centres, counts, idf, path)
    try:
        info = json.loads(str(a["info"]))
    except ValueError:
        raise SlamInputError("vocabulary info is not valid JSON", path) from None
    layout = centres.view(np.uint64) if kind == "binary" else centres
    tree = Tree(np.ascontiguousarray(layout), counts.astype(np.int32))
    return Vocabulary(tree, idf, kind, branching, levels, info if isinstance(info, dict) else {}, path)


def _scalar(a: dict[str, np.ndarray], key: str, path: Path) -> int:
    value = a[key]
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
        raise SlamInputError(f"vocabulary field {key} is not an integer", path)
    return int(value)


def _check_tree(
    kind: str, branching: int, levels: int, centres: np.ndarray, counts: np.ndarray, idf: np.ndarray, path: Path
) -> None:
    """Refuse arrays that do not describe a breadth-first tree of the stated shape."""
    binary = kind == "binary"
    if branching < 2 or not 1 <= levels <= 16:
        raise SlamInputError(f"bad vocabulary shape k={branching}, levels={levels}", path)
    if (
        centres.ndim != 2
        or len(centres) < 2
        or centres.dtype != (np.uint8 if binary else np.float32)
        or (binary and centres.shape[1] % 8)
        or not np.isfinite(centres).all()
    ):
        raise SlamInputError(f"bad vocabulary centres (shape {centres.shape}, type {centres.dtype})", path)
    if (
        counts.shape != (len(centres),)
        or not np.issubdtype(counts.dtype, np.integer)
        or counts.min() < 0
        or counts.max() > branching
        or counts.sum() != len(centres) - 1
        or counts[0] == 0
    ):
        raise SlamInputError("bad vocabulary tree (child counts do not match the nodes)", path)
    parent = np.repeat(np.arange(len(counts)), counts)
    if np.any(parent >= np.arange(1, len(counts))):
        raise SlamInputError("bad vocabulary tree (a node precedes its parent)", path)
    depth = np.zeros(len(counts), np.int64)
    for _ in range(levels + 1):
        depth[1:] = depth[parent] + 1
    if depth.max() > levels:
        raise SlamInputError(f"bad vocabulary tree (deeper than its {levels} levels)", path)
    n_words = int(np.count_nonzero(counts == 0))
    if (
        idf.shape != (n_words,)
        or not np.issubdtype(idf.dtype, np.floating)
        or not np.isfinite(idf).all()
        or (idf.min() < 0)
    ):
        raise SlamInputError(f"bad vocabulary weights (expected {n_words} finite IDF values >= 0)", path)
