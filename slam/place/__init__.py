"""Place recognition over keyframes: a vocabulary tree (bag of words) and a keyframe database.

    vocab = load_vocabulary()              # the shipped ORB vocabulary, or load_vocabulary(path)
    t = vocab.transform(descriptors)       # t.bow (TF-IDF, L1-normalised), t.words, t.nodes (direct index)
    db = KeyframeDatabase(vocab.n_words)   # thread-safe inverted index
    db.add(kf_id, t.bow); db.remove(kf_id)
    candidates = db.query(t.bow, exclude=covisible_ids)              # ORB-SLAM's 80%-common-words filter
    loops = group_scores(candidates, neighbours, min_score=s_min)   # ORB-SLAM's covisibility accumulation

See docs/place_recognition.md for the file format, the shipped vocabulary and measured quality.
"""

from slam.place.bow import BowVector, score
from slam.place.database import Candidates, KeyframeDatabase, group_scores
from slam.place.vocabulary import (
    DEFAULT_VOCABULARY,
    FORMAT_VERSION,
    Transformed,
    Vocabulary,
    load_vocabulary,
    train_vocabulary,
)

__all__ = [
    "DEFAULT_VOCABULARY",
    "FORMAT_VERSION",
    "BowVector",
    "Candidates",
    "KeyframeDatabase",
    "Transformed",
    "Vocabulary",
    "group_scores",
    "load_vocabulary",
    "score",
    "train_vocabulary",
]
