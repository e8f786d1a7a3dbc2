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


def test_training_groups_top_up_short_bm25_lists_with_seeded_random_negatives():
    """Only documents with a positive BM25 score are hard negatives; the rest are random (seeded),
    never the arbitrary zero-score tail of the BM25 top-k."""
    from papercore.retrieval import RetrievalData

    corpus = {"pos": "comet orbit", "hard": "comet tail"}
    corpus |= {f"other{i}": f"bread recipe number{i}" for i in range(20)}
    data = RetrievalData(corpus=corpus, queries={"q": "comet"}, qrels={"q": {"pos": 1}})
    groups = [make_training_groups(data, n_negatives=3, seed=s) for s in (0, 0, 1, 2, 3)]
    assert groups[0].to_list() == groups[1].to_list()  # seeded
    text_to_id = {t: d for d, t in corpus.items()}
    tails = set()
    for ds in groups:
        (row,) = ds.to_list()
        negs = [text_to_id[row[f"negative_{j}"]] for j in (1, 2, 3)]
        assert negs[0] == "hard" and len(set(negs)) == 3 and "pos" not in negs
        tails.add(tuple(negs[1:]))
    assert len(tails) > 1  # the top-up follows the seed


def test_bm25_weighter_is_the_shared_bm25_up_to_the_k1_plus_1_factor():
    """kls's BM25 term weights (classic (k1 + 1) numerator) summed over a query's words equal the
    workspace BM25 (papercore's BM25Index, Lucene variant) times (k1 + 1): same words, idf, norms."""
    from kls.weighting import BM25Weighter
    from papercore.retrieval import BM25Index

    docs = {
        "a": "The comet's tail points away from the Sun, a comet tail of dust.",
        "b": "A bread recipe: flour, water, salt and a long rise.",
        "c": "Comet orbits are ellipses; the orbit of a comet is long.",
        "d": "Rise of the dust storm on Mars.",
    }
    queries = ["comet tail", "long rise of bread", "dust comet comet"]
    for k1, b in ((1.2, 0.75), (2.0, 0.3)):
        w = BM25Weighter(k1=k1, b=b).fit(list(docs.values()))
        W = w.matrix(list(docs.values())).toarray()
        index = BM25Index(k1=k1, b=b, keep_zero_scores=True)
        index.index(docs)
        for q in queries:
            counts = np.zeros(W.shape[1])
            for t in index.tokenize(q):
                counts[w.vocabulary_[t]] += 1
            np.testing.assert_allclose(W @ counts, (k1 + 1) * index.scores(q), rtol=1e-5)


def _small_data():
    from papercore.retrieval import RetrievalData

    corpus = {f"d{i}": f"doc {i} about topic{i % 2}" for i in range(5)}
    queries = {"q1": "topic0 doc", "q2": "topic1 doc"}
    # q1 has 3 relevant documents (2 left as negatives), q2 has 1 (4 left)
    qrels = {"q1": {"d0": 1, "d2": 1, "d4": 1}, "q2": {"d1": 1}}
    return RetrievalData(corpus=corpus, queries=queries, qrels=qrels)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["bm25", "random"])
def test_training_groups_with_too_few_negatives_error_skip_or_fewer(method, caplog):
    from kls.errors import InvalidGroupError

    data = _small_data()
    with pytest.raises(InvalidGroupError, match=r"n_negatives=3 .*'q1' \(2\)"):
        make_training_groups(data, n_negatives=3, method=method)  # looped forever before
    ds = make_training_groups(data, n_negatives=3, method=method, if_short="skip")
    assert set(ds["anchor"]) == {"topic1 doc"} and len(ds.column_names) == 5
    ds = make_training_groups(data, n_negatives=3, method=method, if_short="fewer")
    assert ds.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert len(ds) == 4 and "lowered from 3 to 2" in caplog.text
    text_to_id = {t: d for d, t in data.corpus.items()}
    for r in ds:
        rel = set(data.qrels["q1" if r["anchor"] == "topic0 doc" else "q2"])
        negs = {text_to_id[r["negative_1"]], text_to_id[r["negative_2"]]}
        assert len(negs) == 2 and not negs & rel
    with pytest.raises(ValueError, match="if_short"):
        make_training_groups(data, if_short="pad")


@pytest.mark.timeout(60)
def test_group_rows_with_empty_negatives_raise_a_clear_error():
    import datasets

    from kls import RetrievalKeywordSmoother
    from kls.errors import InvalidGroupError

    rows = {
        "anchor": ["q a", "q b"],
        "positive": ["alpha beta", "gamma delta"],
        "negative_1": ["eps zeta", "eta theta"],
        "negative_2": ["iota kappa", None],
    }
    sm = RetrievalKeywordSmoother().fit(["alpha beta", "gamma delta", "eps zeta", "eta theta"])
    with pytest.raises(InvalidGroupError, match="row 1: negative 2 is empty \\(None\\)"):
        sm.to_dataset(datasets.Dataset.from_dict(rows))
    rows["negative_2"][1] = "  "
    with pytest.raises(InvalidGroupError, match="row 1: negative 2 is empty"):
        sm.to_dataset(datasets.Dataset.from_dict(rows))
