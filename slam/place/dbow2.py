"""Our binary vocabulary written as a DBoW2 text vocabulary (the format of ORB-SLAM's ORBvoc.txt).

The format, as DBoW2's `TemplatedVocabulary::loadFromTextFile` reads it:

    k L scoring weighting                      first line; scoring 0 = L1 norm, weighting 0 = TF-IDF
    parent is_leaf b0 b1 ... b31 weight        one line per node after the root (node ids 1, 2, ... in
                                               file order); b* the 32 descriptor bytes in decimal

Words are numbered in the order their (is_leaf = 1) lines appear. Our trees are breadth-first with the
words numbered in node order, so node and word ids carry over unchanged; a word's weight is its IDF, an
inner node's 0. The file ends without a newline: the reader loops `while (!eof)` and would otherwise add a
blank node under the root.

Depth. ORB-SLAM computes each frame's FeatureVector (the direct index that SearchByBoW and
SearchForTriangulation match within) at the node 4 levels above the words (`transform(..., levelsup=4)`),
i.e. at level L - 4: level 2 of its own ORBvoc.txt (k = 10, L = 6), 100 groups. A 4-level tree of ours would
put every feature in the root, one group, and ORB-SLAM3's monocular tracking then loses the map a few
frames after initialisation. `levels` > the tree's depth writes a deeper tree with the same words: each word
becomes the end of a chain of single-child nodes (each with the word's centre), so every descriptor reaches
the same word as before and the node L - 4 levels down is the ancestor it has in our tree. The chain nodes
follow the original nodes in the file (the reader only needs parents before children), the words' own
nodes last and in word order, so word ids are unchanged.

Used to give the ORB-SLAM3 benchmark peer a vocabulary where its official ORBvoc.txt cannot be had.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from slam.errors import SlamInputError
from slam.place.vocabulary import Vocabulary

L1_NORM = 0  # DBoW2 ScoringType
TF_IDF = 0  # DBoW2 WeightingType
ORB_BYTES = 32


def dbow2_text(vocabulary: Vocabulary, levels: int | None = None) -> str:
    """The whole DBoW2 text file for a 32-byte binary (ORB) vocabulary, `levels` deep (default: its own
    depth; deeper by chains of single-child nodes above each word, see the module docstring)."""
    if vocabulary.kind != "binary" or vocabulary.descriptor_size != ORB_BYTES:
        raise SlamInputError(
            f"DBoW2 export needs a 32-byte binary (ORB) vocabulary, this one is {vocabulary.kind} "
            f"with {vocabulary.descriptor_size}-byte/dimension descriptors",
            vocabulary.source,
        )
    levels = vocabulary.levels if levels is None else int(levels)
    if levels < vocabulary.levels:
        raise ValueError(f"a DBoW2 tree cannot be shallower ({levels}) than the vocabulary ({vocabulary.levels})")
    counts = vocabulary.tree.child_count.astype(np.int64)
    parent = np.repeat(np.arange(len(counts)), counts)  # parent of nodes 1..n-1 (children follow in node order)
    centres = np.ascontiguousarray(vocabulary.tree.centres).view(np.uint8).reshape(len(counts), ORB_BYTES)
    weight = np.zeros(len(counts))
    weight[vocabulary.word_node] = vocabulary.idf
    extra = levels - vocabulary.levels  # chain nodes under each word; the last of them is the word
    lines = [f"{vocabulary.branching} {levels} {L1_NORM} {TF_IDF}"]
    for node in range(1, len(counts)):
        leaf = 1 if counts[node] == 0 and not extra else 0
        data = " ".join(map(str, centres[node].tolist()))
        lines.append(f"{parent[node - 1]} {leaf} {data} {weight[node] if leaf else 0.0:.9g}")
    above = vocabulary.word_node  # the node each word's chain hangs from, one chain level at a time
    for step in range(1, extra + 1):
        first = len(counts) + (step - 1) * len(above)
        leaf = 1 if step == extra else 0
        for word, node in enumerate(vocabulary.word_node):
            data = " ".join(map(str, centres[node].tolist()))
            lines.append(f"{above[word]} {leaf} {data} {vocabulary.idf[word] if leaf else 0.0:.9g}")
        above = np.arange(first, first + len(above))
    return "\n".join(lines)


def write_dbow2_text(vocabulary: Vocabulary, path: str | Path, levels: int | None = None) -> Path:
    """Write `dbow2_text(vocabulary, levels)` to `path` atomically (temporary file beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dbow2_text(vocabulary, levels))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
