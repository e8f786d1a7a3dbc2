"""Synthetic data, the cold-start split, and BM25 training groups."""

from __future__ import annotations

import numpy as np
import pytest

from kls.data import (
    cold_start_split,
    make_synthetic_classification,
    make_synthetic_retrieval,
    make_training_groups,
)
from kls.errors import OutOfRangeError


def test_synthetic_classification_sizes_and_determinism():
    dd = make_synthetic_classification(n_per_class=100, imbalance_ratio=10.0, seed=0)
    counts = np.bincount(dd["train"]["label"], minlength=6)
    assert counts[0] == 100 and counts[-1] == 10
    assert (np.diff(counts) <= 0).all()
    assert (np.bincount(dd["test"]["label"]) == 100).all()
    again = make_synthetic_classification(n_per_class=100, imbalance_ratio=10.0, seed=0)
    assert dd["train"]["text"] == again["train"]["text"]
    lens = [len(t.split()) for t in dd["train"]["text"]]
    assert min(lens) >= 12 and max(lens) <= 30
    with pytest.raises(OutOfRangeError):
        make_synthetic_classification(overlap=1.0)


@pytest.fixture(scope="module")
def syn():
    from papercore.retrieval import RetrievalData

    s = make_synthetic_retrieval(n_topics=4, entities_per_topic=4, seed=0)
    full = RetrievalData(
        corpus=s.corpus,
        queries={**s.train.queries, **s.test.queries},
        qrels={**s.train.qrels, **s.test.qrels},
    )
    return s, full


def test_cold_start_split_never_shows_test_positives_in_training(syn):
    _, full = syn
    train, test = cold_start_split(full, frac=0.3, by="document", seed=0)
    train_pos = {d for q in train.qrels.values() for d, v in q.items() if v > 0}
    test_pos = {d for q in test.qrels.values() for d, v in q.items() if v > 0}
    assert train_pos and test_pos and not (train_pos & test_pos)
    assert not (test_pos & set(train.corpus))  # not even as negatives
    assert set(test.corpus) == set(full.corpus)
    assert set(train.queries).isdisjoint(test.queries)
    assert len(train.queries) + len(test.queries) == len(full.queries)
    tr2, _ = cold_start_split(full, frac=0.3, by="document", seed=0)
    assert tr2.queries == train.queries


def test_query_split_and_bad_arguments(syn):
    _, full = syn
    _, test = cold_start_split(full, frac=0.25, by="query", seed=1)
    assert len(test.queries) == round(0.25 * len(full.queries))
    with pytest.raises(OutOfRangeError):
        cold_start_split(full, frac=1.0)
    with pytest.raises(ValueError, match="by must be"):
        cold_start_split(full, by="entity")


def test_training_groups_have_bm25_hard_negatives(syn):
    s, _ = syn
    ds = make_training_groups(s.train, n_negatives=3, positives_per_query=1)
    assert ds.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert len(ds) == len(s.train.queries)
    text_to_id = {t: d for d, t in s.corpus.items()}
    q_to_id = {t: q for q, t in s.train.queries.items()}
    same_topic = 0
    for r in ds:
        qid = q_to_id[r["anchor"]]
        rel = set(s.train.qrels[qid])
        negs = [text_to_id[r[f"negative_{j}"]] for j in (1, 2, 3)]
        assert not rel & set(negs)
        same_topic += sum(s.doc_topic[n] == s.doc_topic[text_to_id[r["positive"]]] for n in negs)
    assert same_topic / (3 * len(ds)) > 0.5  # hard negatives come from the same topic
