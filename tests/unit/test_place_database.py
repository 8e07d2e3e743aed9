"""Keyframe database: the inverted index against brute-force scoring, removal, filters, group scores, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from slam.place import BowVector, KeyframeDatabase, group_scores, score

N_WORDS = 300


def _random_bows(seed: int, n: int) -> list[BowVector]:
    """BoW vectors of n 'images', each drawing words mostly from one of a few topics so scores vary."""
    rng = np.random.default_rng(seed)
    idf = rng.uniform(0.05, 4.0, N_WORDS)
    idf[rng.choice(N_WORDS, 10, replace=False)] = 0.0  # words in every training image: dropped from vectors
    topics = [rng.choice(N_WORDS, 60, replace=False) for _ in range(4)]
    bows = []
    for _ in range(n):
        topic = topics[rng.integers(len(topics))]
        words = np.concatenate([rng.choice(topic, rng.integers(20, 80)), rng.integers(0, N_WORDS, rng.integers(0, 30))])
        bows.append(BowVector.from_words(words, idf))
    return bows


def _brute_force(query: BowVector, stored: dict[int, BowVector]) -> dict[int, tuple[float, int]]:
    """(L1 score from the dense formula, common words) of every stored vector sharing a word with the query."""
    q = query.dense(N_WORDS)
    out = {}
    for kf, bow in stored.items():
        v = bow.dense(N_WORDS)
        common = int(np.count_nonzero((q > 0) & (v > 0)))
        if common:
            out[kf] = (1 - 0.5 * np.abs(q / q.sum() - v / v.sum()).sum(), common)
    return out


def _check_query(db: KeyframeDatabase, query: BowVector, stored: dict[int, BowVector], exclude=(), ratio=0.0):
    reference = {k: v for k, v in _brute_force(query, stored).items() if k not in set(exclude)}
    result = db.query(query, exclude=exclude, min_common_ratio=ratio)
    if reference:
        max_common = max(c for _, c in reference.values())
        reference = {k: v for k, v in reference.items() if v[1] >= ratio * max_common}
    assert sorted(result.kf_ids.tolist()) == sorted(reference)
    for kf, s, c in zip(result.kf_ids.tolist(), result.scores, result.common):
        assert s == pytest.approx(reference[kf][0], abs=1e-5)
        assert c == reference[kf][1]
    assert np.all(np.diff(result.scores) <= 0), "not sorted best first"
    return result


def test_query_matches_brute_force_scoring_after_adds_and_removes():
    bows = _random_bows(0, 80)
    db = KeyframeDatabase(N_WORDS)
    stored = {}
    ids = np.random.default_rng(1).permutation(10_000)[:60]  # sparse, unordered keyframe ids
    for kf, bow in zip(ids.tolist(), bows):
        db.add(kf, bow)
        stored[kf] = bow
    for kf in ids[::3].tolist():  # culled keyframes
        db.remove(kf)
        del stored[kf]
    for kf, bow in zip(range(20_000, 20_020), bows[60:]):  # new ones reuse the freed slots
        db.add(kf, bow)
        stored[kf] = bow
    assert len(db) == len(stored)
    for query in _random_bows(2, 15):
        _check_query(db, query, stored)
        _check_query(db, query, stored, ratio=0.8)
        _check_query(db, query, stored, exclude=list(stored)[:25], ratio=0.8)


def test_query_of_a_stored_vector_ranks_it_first_with_score_one():
    bows = _random_bows(3, 30)
    db = KeyframeDatabase(N_WORDS)
    for kf, bow in enumerate(bows):
        db.add(kf, bow)
    for kf in (0, 7, 29):
        top = db.query(bows[kf], max_results=3)
        assert top.kf_ids[0] == kf and top.scores[0] == pytest.approx(1.0, abs=1e-5)
        assert len(top) <= 3
        assert db.query(bows[kf], exclude={kf}).kf_ids.tolist().count(kf) == 0


def test_min_score_and_re_adding_a_keyframe():
    bows = _random_bows(4, 20)
    db = KeyframeDatabase(N_WORDS)
    for kf, bow in enumerate(bows):
        db.add(kf, bow)
    query = bows[5]
    result = db.query(query, min_score=0.2, min_common_ratio=0.0)
    expected = [kf for kf, bow in enumerate(bows) if score(query, bow) >= 0.2]
    assert sorted(result.kf_ids.tolist()) == expected
    db.add(5, bows[6])  # same id again: it now stands for the new vector only
    stored = {kf: bow for kf, bow in enumerate(bows)}
    stored[5] = bows[6]
    _check_query(db, query, stored)
    assert len(db) == 20
    db.remove(5)
    db.remove(5)  # twice: ignored
    assert 5 not in db and len(db) == 19
    assert db.bow(5) is None and db.bow(6) is bows[6]
    assert len(db.query(BowVector.empty())) == 0
    with pytest.raises(ValueError):
        db.add(99, BowVector(np.array([N_WORDS], np.int32), np.array([1.0], np.float32)))


def test_group_scores_accumulate_over_covisible_neighbours():
    bows = _random_bows(5, 40)
    db = KeyframeDatabase(N_WORDS)
    for kf, bow in enumerate(bows):
        db.add(kf, bow)
    candidates = db.query(bows[0], exclude={0}, min_common_ratio=0.0)
    score_of = dict(zip(candidates.kf_ids.tolist(), candidates.scores.tolist()))
    graph = {kf: [(kf + 1) % 40, (kf + 2) % 40, (kf + 39) % 40] for kf in range(40)}  # a ring of covisibility
    min_score = float(np.median(candidates.scores))
    result = group_scores(candidates, graph.__getitem__, min_score=min_score)
    # Reference: straight from the definition.
    groups = {}
    for kf, s in score_of.items():
        if s < min_score:
            continue
        members = [m for m in [kf, *graph[kf]] if m in score_of]
        best = max(members, key=score_of.__getitem__)
        groups[best] = max(groups.get(best, 0.0), sum(score_of[m] for m in members))
    kept = {kf: g for kf, g in groups.items() if g >= 0.75 * max(groups.values())}
    assert sorted(result.kf_ids.tolist()) == sorted(kept)
    for kf, g in zip(result.kf_ids.tolist(), result.scores):
        assert g == pytest.approx(kept[kf])
    assert np.all(np.diff(result.scores) <= 0)
    empty = group_scores(candidates, graph.__getitem__, min_score=2.0)
    assert len(empty) == 0


def test_concurrent_adds_removes_and_queries_keep_the_index_consistent():
    bows = _random_bows(6, 200)
    db = KeyframeDatabase(N_WORDS)
    errors = []

    def writer(offset: int):
        try:
            for i in range(100):
                db.add(offset + i, bows[offset + i])
                if i % 4 == 0:
                    db.remove(offset + i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        try:
            for bow in bows[:60]:
                db.query(bow, max_results=5)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 100)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = {kf: bows[kf] for o in (0, 100) for kf in range(o, o + 100) if (kf - o) % 4}
    assert len(db) == len(stored)
    for query in bows[::17]:
        _check_query(db, query, stored, ratio=0.8)
