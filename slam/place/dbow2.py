"""Our binary vocabulary written as a DBoW2 text vocabulary (the format of ORB-SLAM's ORBvoc.txt).

The format, as DBoW2's `TemplatedVocabulary::loadFromTextFile` reads it:

    k L scoring weighting                      first line; scoring 0 = L1 norm, weighting 0 = TF-IDF
    parent is_leaf b0 b1 ... b31 weight        one line per node after the root (node ids 1, 2, ... in
                                               file order); b* the 32 descriptor bytes in decimal

Words are numbered in the order their (is_leaf = 1) lines appear. Our trees are breadth-first with the
words numbered in node order, so node and word ids carry over unchanged; a word's weight is its IDF, an
inner node's 0. The file ends without a newline: the reader loops `while (!eof)` and would otherwise add a
blank node under the root.

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


def dbow2_text(vocabulary: Vocabulary) -> str:
    """The whole DBoW2 text file for a 32-byte binary (ORB) vocabulary."""
    if vocabulary.kind != "binary" or vocabulary.descriptor_size != ORB_BYTES:
        raise SlamInputError(
            f"DBoW2 export needs a 32-byte binary (ORB) vocabulary, this one is {vocabulary.kind} "
            f"with {vocabulary.descriptor_size}-byte/dimension descriptors",
            vocabulary.source,
        )
    counts = vocabulary.tree.child_count.astype(np.int64)
    parent = np.repeat(np.arange(len(counts)), counts)  # parent of nodes 1..n-1 (children follow in node order)
    centres = np.ascontiguousarray(vocabulary.tree.centres).view(np.uint8).reshape(len(counts), ORB_BYTES)
    weight = np.zeros(len(counts))
    weight[vocabulary.word_node] = vocabulary.idf
    lines = [f"{vocabulary.branching} {vocabulary.levels} {L1_NORM} {TF_IDF}"]
    for node in range(1, len(counts)):
        leaf = 1 if counts[node] == 0 else 0
        data = " ".join(map(str, centres[node].tolist()))
        lines.append(f"{parent[node - 1]} {leaf} {data} {weight[node]:.9g}")
    return "\n".join(lines)


def write_dbow2_text(vocabulary: Vocabulary, path: str | Path) -> Path:
    """Write `dbow2_text(vocabulary)` to `path` atomically (temporary file beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dbow2_text(vocabulary))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
