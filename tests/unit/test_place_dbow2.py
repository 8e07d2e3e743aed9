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
