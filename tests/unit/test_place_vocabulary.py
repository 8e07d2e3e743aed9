"""Vocabulary tree: clustering recovers known clusters, BoW scores, direct index, float descriptors."""

from __future__ import annotations

import numpy as np
import pytest

from slam.errors import SlamInputError
from slam.place import BowVector, load_vocabulary, score, train_vocabulary


@pytest.fixture(scope="module")
def rendered_views() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic view, a view of another part of the same room, and a view of another room (scenes the
    shipped vocabulary was not trained on)."""
    from slam.synthetic import Renderer, build_scene, make_trajectory, synthetic_camera

    poses = make_trajectory("orbit", np.array([0.0, 6.0]), 0)
    room = Renderer(build_scene(0), synthetic_camera())
    other_room = Renderer(build_scene(1), synthetic_camera())
    return room.render(poses[0])[0], room.render(poses[1])[0], other_room.render(poses[0])[0]


def _flip_bits(rng: np.random.Generator, descriptors: np.ndarray, p: float) -> np.ndarray:
    flips = np.packbits(rng.random((len(descriptors), descriptors.shape[1] * 8)) < p, axis=1)
    return np.bitwise_xor(descriptors, flips)


def _binary_clusters(seed: int, k: int = 5, n: int = 3000):
    """k*k clusters under k parents: parents ~128 bits apart, siblings ~65, members ~15 bits from their centre."""
    rng = np.random.default_rng(seed)
    parents = rng.integers(0, 256, (k, 32), dtype=np.uint8)
    centres = _flip_bits(rng, np.repeat(parents, k, axis=0), 0.15)
    labels = rng.integers(0, k * k, n)
    return _flip_bits(rng, centres[labels], 0.03), labels


def _float_clusters(seed: int, k: int = 4, dim: int = 64, n: int = 2000):
    rng = np.random.default_rng(seed)

    def unit(x):
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    parents = unit(rng.normal(size=(k, dim)))
    centres = unit(np.repeat(parents, k, axis=0) + 0.08 * rng.normal(size=(k * k, dim)))
    labels = rng.integers(0, k * k, n)
    return unit(centres[labels] + 0.01 * rng.normal(size=(n, dim))), labels


def _assert_recovered(vocab, descriptors, labels, n_clusters):
    words = vocab.words(descriptors)
    assert vocab.n_words == n_clusters
    for c in range(n_clusters):
        assert len(np.unique(words[labels == c])) == 1, f"cluster {c} split over several words"
    for w in range(vocab.n_words):
        assert len(np.unique(labels[words == w])) <= 1, f"word {w} mixes clusters"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_training_recovers_known_clusters(seed):
    descriptors, labels = _binary_clusters(seed)
    vocab = train_vocabulary(np.array_split(descriptors, 30), branching=5, levels=2, seed=seed)
    assert vocab.kind == "binary" and vocab.descriptor_size == 32
    _assert_recovered(vocab, descriptors, labels, 25)
    # The level-1 node groups each parent's 5 clusters: the direct index's candidate matches.
    nodes = vocab.nodes_at_level(vocab.words(descriptors), 1)
    for parent in range(5):
        assert len(np.unique(nodes[labels // 5 == parent])) == 1


def test_float_training_recovers_known_clusters():
    descriptors, labels = _float_clusters(3)
    vocab = train_vocabulary(np.array_split(descriptors, 20), branching=4, levels=2, seed=0)
    assert vocab.kind == "float" and vocab.descriptor_size == 64
    _assert_recovered(vocab, descriptors, labels, 16)
    same = vocab.bow(descriptors[:200])
    assert score(same, vocab.bow(descriptors[:200])) == pytest.approx(1.0)


def test_kmeans_centres_are_bitwise_majorities_and_means():
    from slam.matching import as_kernel
    from slam.place.kmeans import kmeans

    descriptors, _ = _binary_clusters(8, n=999)
    centres, labels = kmeans(as_kernel(descriptors), 5, np.random.default_rng(0))
    for c in range(len(centres)):
        bits = np.unpackbits(descriptors[labels == c], axis=1)
        majority = np.packbits(2 * bits.sum(axis=0) > len(bits))
        np.testing.assert_array_equal(centres[c].view(np.uint8), majority)
    floats, _ = _float_clusters(9, n=500)
    centres, labels = kmeans(as_kernel(floats), 4, np.random.default_rng(0))
    for c in range(len(centres)):
        np.testing.assert_allclose(centres[c], floats[labels == c].mean(axis=0), atol=1e-6)
    # Lloyd's fixed point: every row sits with its nearest centre.
    dist = np.linalg.norm(floats[:, None] - centres[None], axis=2)
    np.testing.assert_array_equal(labels, np.argmin(dist, axis=1))


def test_idf_counts_images_holding_the_word():
    descriptors, labels = _binary_clusters(4)
    # Cluster 0 in every image, cluster 1 in a single image, the rest spread out.
    sets = [descriptors[(labels != 1)][i::10] for i in range(10)]
    sets[0] = np.concatenate([sets[0], descriptors[labels == 1]])
    vocab = train_vocabulary(sets, branching=5, levels=2, seed=0)
    w0, w1 = vocab.words(descriptors[labels == 0][:1])[0], vocab.words(descriptors[labels == 1][:1])[0]
    assert vocab.idf[w0] == pytest.approx(0.0)
    assert vocab.idf[w1] == pytest.approx(np.log(10.0))


def test_bow_vector_is_tf_idf_and_l1_normalised():
    descriptors, labels = _binary_clusters(5)
    vocab = train_vocabulary(np.array_split(descriptors, 30), branching=5, levels=2, seed=0)
    words = vocab.words(descriptors[:300])
    bow = vocab.bow(descriptors[:300])
    expected = np.bincount(words, minlength=vocab.n_words) * vocab.idf
    expected /= expected.sum()
    np.testing.assert_allclose(bow.dense(vocab.n_words), expected, atol=1e-6)
    assert np.all(np.diff(bow.words) > 0) and np.all(bow.weights > 0)


def test_score_matches_the_l1_formula():
    rng = np.random.default_rng(6)
    idf = rng.uniform(0.1, 3.0, 50)
    for _ in range(20):
        a = BowVector.from_words(rng.integers(0, 50, rng.integers(1, 40)), idf)
        b = BowVector.from_words(rng.integers(0, 50, rng.integers(1, 40)), idf)
        va, vb = a.dense(50), b.dense(50)
        assert score(a, b) == pytest.approx(1 - 0.5 * np.abs(va / va.sum() - vb / vb.sum()).sum())
    assert score(a, a) == pytest.approx(1.0)
    assert score(a, BowVector.empty()) == 0.0


def test_rendered_view_scores_higher_against_its_warped_copy_than_another_view(rendered_views):
    import cv2

    from slam.config import FeaturesConfig
    from slam.features import create_extractor

    vocab = load_vocabulary()  # the shipped one, trained on other scenes (seeds 100-107)
    extractor = create_extractor(FeaturesConfig())
    view, other_place, other_scene = rendered_views
    h, w = view.shape[:2]
    warp = cv2.getRotationMatrix2D((w / 2, h / 2), 4.0, 1.05)
    warp[:, 2] += (6, -4)
    warped = cv2.warpAffine(view, warp, (w, h), borderMode=cv2.BORDER_REFLECT)
    bows = [vocab.bow(extractor.extract(image).descriptors) for image in (view, warped, other_place, other_scene)]
    same = score(bows[0], bows[1])
    # Views of one room share its texture statistics, so unrelated views still score about 0.1 (measured).
    assert same > 1.5 * score(bows[0], bows[2])
    assert same > 1.5 * score(bows[0], bows[3])


def test_transform_refuses_descriptors_of_another_kind(tmp_path):
    descriptors, _ = _binary_clusters(7, n=500)
    vocab = train_vocabulary([descriptors], branching=5, levels=2, seed=0)
    path = vocab.save(tmp_path / "v.npz")
    loaded = load_vocabulary(path)
    with pytest.raises(SlamInputError, match="32-byte binary") as err:
        loaded.bow(np.zeros((10, 64), np.float32))
    assert str(path) in str(err.value)
    assert len(vocab.words(np.zeros((0, 32), np.uint8))) == 0
    with pytest.raises(SlamInputError, match="identical"):
        train_vocabulary([np.zeros((50, 32), np.uint8)], branching=5, levels=2)
    with pytest.raises(SlamInputError, match="no descriptors"):
        train_vocabulary([np.zeros((0, 32), np.uint8)])
    assert len(vocab.bow(np.zeros((0, 32), np.uint8))) == 0


def test_shipped_vocabulary_loads_and_is_small():
    from slam.place import DEFAULT_VOCABULARY

    vocab = load_vocabulary()
    assert vocab.kind == "binary" and vocab.descriptor_size == 32
    assert vocab.n_words >= 5000
    assert DEFAULT_VOCABULARY.stat().st_size < 5 * 2**20
    assert "synthetic" in vocab.info["trained_on"]
