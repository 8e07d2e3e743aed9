"""Our ORB vocabulary as a DBoW2 text file (for the ORB-SLAM3 peer): the file, read back the way DBoW2's
loadFromTextFile reads it, is the same tree: same words for the same descriptors, IDF weights on the words."""

from __future__ import annotations

import numpy as np
import pytest

from slam.errors import SlamInputError
from slam.place.dbow2 import dbow2_text, write_dbow2_text
from slam.place.vocabulary import load_vocabulary, train_vocabulary


def parse_dbow2(text: str):
    """(k, L, scoring, weighting, parent, is_leaf, descriptors (n,32) uint8, weights) as DBoW2 builds them."""
    lines = text.split("\n")
    k, levels, scoring, weighting = map(int, lines[0].split())
    rows = [line.split() for line in lines[1:]]
    assert all(len(r) == 2 + 32 + 1 for r in rows)
    parent = np.array([0] + [int(r[0]) for r in rows])
    leaf = np.array([0] + [int(r[1]) for r in rows])
    desc = np.zeros((len(rows) + 1, 32), np.uint8)
    desc[1:] = np.array([[int(b) for b in r[2:34]] for r in rows], np.uint8)
    weight = np.array([0.0] + [float(r[34]) for r in rows])
    return k, levels, scoring, weighting, parent, leaf, desc, weight


def dbow2_words(descriptors: np.ndarray, parent, leaf, desc) -> np.ndarray:
    """DBoW2's transform: from the root, the first child at the least Hamming distance, down to a leaf;
    words numbered in the order their nodes appear in the file."""
    children: dict[int, list[int]] = {}
    for node in range(1, len(parent)):
        children.setdefault(int(parent[node]), []).append(node)
    word_of = np.cumsum(leaf) - 1
    out = []
    for d in descriptors:
        node = 0
        while not leaf[node]:
            kids = children[node]
            dist = np.unpackbits(desc[kids] ^ d, axis=1).sum(axis=1)
            node = kids[int(np.argmin(dist))]  # argmin: first of equals, as DBoW2's strict '<'
        out.append(word_of[node])
    return np.array(out)


def test_shipped_vocabulary_round_trips_through_dbow2_text():
    vocab = load_vocabulary()
    text = dbow2_text(vocab)
    assert not text.endswith("\n")  # DBoW2 would read a trailing newline as one more (blank) node
    k, levels, scoring, weighting, parent, leaf, desc, weight = parse_dbow2(text)
    assert (k, levels, scoring, weighting) == (vocab.branching, vocab.levels, 0, 0)  # L1 norm, TF-IDF
    assert len(parent) == vocab.n_nodes and leaf.sum() == vocab.n_words
    np.testing.assert_allclose(weight[leaf == 1], vocab.idf, rtol=1e-6)
    assert not weight[leaf == 0].any()
    rng = np.random.default_rng(3)
    descriptors = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    # Descriptors near real centres too, so that the deep levels are exercised by close calls.
    near = vocab.tree.centres.view(np.uint8).reshape(-1, 32)[rng.choice(vocab.word_node, 200)].copy()
    flips = rng.integers(0, 32, (200, 3))
    for row, cols in zip(near, flips):
        row[cols] ^= np.uint8(1 << int(rng.integers(8)))
    descriptors = np.concatenate([descriptors, near])
    np.testing.assert_array_equal(dbow2_words(descriptors, parent, leaf, desc), vocab.words(descriptors))


def dbow2_direct_index_nodes(descriptors: np.ndarray, levels: int, parent, leaf, desc, levelsup: int) -> np.ndarray:
    """The FeatureVector node DBoW2's transform(..., levelsup) gives each descriptor: the node on its path
    at level L - levelsup (the root when that is <= 0)."""
    children: dict[int, list[int]] = {}
    for node in range(1, len(parent)):
        children.setdefault(int(parent[node]), []).append(node)
    out = []
    for d in descriptors:
        node, level, kept = 0, 0, 0
        while not leaf[node]:
            kids = children[node]
            node = kids[int(np.argmin(np.unpackbits(desc[kids] ^ d, axis=1).sum(axis=1)))]
            level += 1
            if level == levels - levelsup:
                kept = node
        out.append(kept)
    return np.array(out)


def test_deeper_export_keeps_the_words_and_gives_orb_slam_level_2_groups():
    """ORB-SLAM groups features 4 levels above the words: with our 4-level tree that is the root (one
    group); written 6 deep, the groups are our level-2 nodes and every descriptor keeps its word."""
    vocab = load_vocabulary()
    rng = np.random.default_rng(5)
    near = vocab.tree.centres.view(np.uint8).reshape(-1, 32)[rng.choice(vocab.word_node, 150)].copy()
    near[:, 7] ^= np.uint8(4)
    descriptors = np.concatenate([rng.integers(0, 256, (150, 32), dtype=np.uint8), near])

    flat = parse_dbow2(dbow2_text(vocab))
    assert set(dbow2_direct_index_nodes(descriptors, flat[1], *flat[4:7], levelsup=4)) == {0}

    text = dbow2_text(vocab, levels=6)
    assert not text.endswith("\n")
    k, levels, scoring, weighting, parent, leaf, desc, weight = parse_dbow2(text)
    assert (k, levels, scoring, weighting) == (vocab.branching, 6, 0, 0)
    assert len(parent) == vocab.n_nodes + 2 * vocab.n_words and leaf.sum() == vocab.n_words
    assert (parent[1:] < np.arange(1, len(parent))).all()  # parents before children, as the reader needs
    np.testing.assert_allclose(weight[leaf == 1], vocab.idf, rtol=1e-6)
    assert not weight[leaf == 0].any()
    np.testing.assert_array_equal(dbow2_words(descriptors, parent, leaf, desc), vocab.words(descriptors))
    groups = dbow2_direct_index_nodes(descriptors, levels, parent, leaf, desc, levelsup=4)
    level2 = np.arange(1 + vocab.branching, 1 + vocab.branching + vocab.branching**2)  # breadth-first ids
    assert set(groups) <= set(level2) and len(set(groups)) > 50
    # ... and each is the level-2 ancestor of the descriptor's word in our own tree.
    word_nodes = vocab.word_node[vocab.words(descriptors)]
    np.testing.assert_array_equal(groups, parent[parent[word_nodes]])  # words are at level 4

    with pytest.raises(ValueError, match="shallower"):
        dbow2_text(vocab, levels=3)


def test_write_is_atomic_and_readable(tmp_path):
    rng = np.random.default_rng(0)
    vocab = train_vocabulary([rng.integers(0, 256, (200, 32), dtype=np.uint8) for _ in range(4)], 3, 2)
    path = write_dbow2_text(vocab, tmp_path / "voc" / "small.txt")
    assert path.read_text() == dbow2_text(vocab)
    assert [p.name for p in path.parent.iterdir()] == ["small.txt"]


def test_float_vocabulary_is_refused():
    rng = np.random.default_rng(0)
    vocab = train_vocabulary([rng.normal(size=(100, 8)).astype(np.float32) for _ in range(3)], 3, 2)
    with pytest.raises(SlamInputError, match="32-byte binary"):
        dbow2_text(vocab)
