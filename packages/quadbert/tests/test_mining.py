"""build_quadruplets: pools, false-negative guards, reproducibility and bad inputs."""

from __future__ import annotations

import logging

import pytest

from quadbert import BM25Retriever, MiningError, build_quadruplets
from quadbert.mining import ID_COLUMNS, QUAD_COLUMNS


def mine(data, **kw):
    kw.setdefault("hard_k", 20)
    kw.setdefault("return_ids", True)
    return build_quadruplets(data.train.queries, data.corpus, data.train.qrels, **kw)


def test_columns_rows_and_texts(synthetic):
    ds = mine(synthetic, n_per_query=3)
    assert ds.column_names == list(QUAD_COLUMNS + ID_COLUMNS)
    assert len(ds) == 3 * len(synthetic.train.queries)
    for r in ds:
        assert r["anchor"] == synthetic.train.queries[r["query_id"]]
        for col in ("positive", "hard_negative", "simple_negative"):
            assert r[col] == synthetic.corpus[r[f"{col}_id"]]
    assert build_quadruplets(
        synthetic.train.queries, synthetic.corpus, synthetic.train.qrels, hard_k=20
    ).column_names == list(QUAD_COLUMNS)


def test_negatives_respect_qrels_and_the_bm25_pool(synthetic):
    ds = mine(synthetic, n_per_query=4)
    bm25 = BM25Retriever()
    bm25.index(synthetic.corpus)
    pool = bm25.search(synthetic.train.queries, k=20)
    for r in ds:
        rel = synthetic.train.qrels[r["query_id"]]
        assert r["positive_id"] in rel
        assert r["hard_negative_id"] not in rel and r["simple_negative_id"] not in rel
        assert r["hard_negative_id"] in pool[r["query_id"]]  # a hard negative is BM25 top-20
        assert r["simple_negative_id"] not in pool[r["query_id"]]  # a simple one is outside it
    # hard negatives are mostly other entities of the query's topic, simple ones rarely
    same_topic = [
        (
            synthetic.doc_topic[r["hard_negative_id"]] == synthetic.doc_topic[r["positive_id"]],
            synthetic.doc_topic[r["simple_negative_id"]] == synthetic.doc_topic[r["positive_id"]],
        )
        for r in ds
    ]
    hard_rate = sum(h for h, _ in same_topic) / len(ds)
    simple_rate = sum(s for _, s in same_topic) / len(ds)
    assert hard_rate > 0.5 > 0.2 > simple_rate


def test_positives_are_cycled_and_hard_negatives_not_repeated(synthetic):
    ds = mine(synthetic, n_per_query=4)
    by_query: dict[str, list[dict]] = {}
    for r in ds:
        by_query.setdefault(r["query_id"], []).append(r)
    for qid, rows in by_query.items():
        assert {r["positive_id"] for r in rows} == set(synthetic.train.qrels[qid])  # 4 positives
        assert len({r["hard_negative_id"] for r in rows}) == 4


def test_reproducible_with_a_seed(synthetic):
    a, b, c = mine(synthetic, seed=3), mine(synthetic, seed=3), mine(synthetic, seed=4)
    assert a.to_list() == b.to_list()
    assert a.to_list() != c.to_list()


def test_qrels_as_sets_give_the_same_quadruplets(synthetic):
    as_sets = {q: set(rel) for q, rel in synthetic.train.qrels.items()}
    a = mine(synthetic)
    b = build_quadruplets(
        synthetic.train.queries, synthetic.corpus, as_sets, hard_k=20, return_ids=True
    )
    assert a.to_list() == b.to_list()


def test_skip_top_leaves_the_best_candidates_out(synthetic):
    bm25 = BM25Retriever()
    bm25.index(synthetic.corpus)
    run = bm25.search(synthetic.train.queries, k=20)
    ds = mine(synthetic, skip_top=5, n_per_query=4)
    for r in ds:
        rel = synthetic.train.qrels[r["query_id"]]
        ranked = sorted(run[r["query_id"]], key=run[r["query_id"]].get, reverse=True)
        top_negatives = [d for d in ranked if d not in rel][:5]
        assert r["hard_negative_id"] not in top_negatives
        assert r["simple_negative_id"] not in top_negatives


def test_duplicate_of_a_positive_is_never_a_negative(synthetic, caplog):
    qid = next(iter(synthetic.train.queries))
    pos = sorted(synthetic.train.qrels[qid])[0]
    corpus = dict(synthetic.corpus)
    corpus["copy-of-positive"] = corpus[pos]  # same text, another id, not in qrels
    queries = {qid: synthetic.train.queries[qid]}
    with caplog.at_level(logging.WARNING, logger="quadbert.mining"):
        ds = build_quadruplets(
            queries, corpus, synthetic.train.qrels, hard_k=20, n_per_query=30, return_ids=True
        )
    assert "copy-of-positive" not in list(ds["hard_negative_id"]) + list(ds["simple_negative_id"])
    assert "whose text equals a positive" in caplog.text
    assert "dropped 1 hard-negative" in caplog.text


def test_queries_without_positive_in_corpus_are_skipped_with_a_warning(synthetic, caplog):
    queries = dict(synthetic.train.queries)
    queries["orphan"] = "a query whose relevant document is not in the corpus"
    qrels = dict(synthetic.train.qrels) | {"orphan": {"missing-doc": 1}}
    with caplog.at_level(logging.WARNING, logger="quadbert.mining"):
        ds = build_quadruplets(queries, synthetic.corpus, qrels, hard_k=20, return_ids=True)
    assert "orphan" not in ds["query_id"]
    assert len(ds) == len(synthetic.train.queries)
    assert "skipping 1 of 101 queries with no relevant document" in caplog.text


def test_every_query_skipped_raises(synthetic):
    with pytest.raises(ValueError, match="no query has a relevant document in the corpus"):
        build_quadruplets(synthetic.train.queries, synthetic.corpus, {"q": {"nope": 1}})


def test_small_corpus_caps_hard_k_with_a_warning(caplog):
    corpus = {f"d{i}": f"comet telescope orbit number {i}" for i in range(6)}
    corpus["d9"] = "bread recipe with butter"
    queries = {"q": "comet telescope"}
    with caplog.at_level(logging.WARNING, logger="quadbert.mining"):
        ds = build_quadruplets(queries, corpus, {"q": {"d0": 1}}, hard_k=100, return_ids=True)
    assert "capping hard_k to 5" in caplog.text
    bm25 = BM25Retriever()
    bm25.index(corpus)
    top5 = bm25.search(queries, k=5)["q"]
    assert ds[0]["hard_negative_id"] in top5
    assert ds[0]["simple_negative_id"] not in set(top5) | {"d0"}


def test_no_simple_negative_raises():
    corpus = {"p1": "bread", "p2": "butter", "h1": "comet orbit", "h2": "comet tail"}
    with pytest.raises(ValueError, match="no simple negative available for query 'q'"):
        build_quadruplets({"q": "comet"}, corpus, {"q": {"p1", "p2"}}, hard_k=2)


def test_no_hard_candidate_anywhere_raises():
    corpus = {"p": "comet", "a": "bread", "b": "butter", "c": "flour"}
    with pytest.raises(MiningError, match="every query was skipped"):
        build_quadruplets({"q": "comet"}, corpus, {"q": {"p"}}, hard_k=2)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"hard_k": 0}, "hard_k must be an integer >= 1"),
        ({"n_per_query": 0}, "n_per_query must be an integer >= 1"),
        ({"skip_top": -1}, "skip_top must be an integer >= 0"),
        ({"miner": "tfidf"}, "miner must be 'bm25' or a SentenceTransformer"),
        ({"miner": 42}, "miner must be 'bm25' or a SentenceTransformer, got int"),
    ],
)
def test_bad_arguments_raise(synthetic, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        build_quadruplets(
            synthetic.train.queries, synthetic.corpus, synthetic.train.qrels, **kwargs
        )


def test_empty_texts_raise_listing_ids(synthetic):
    corpus = dict(synthetic.corpus) | {"blank": "  ", "empty": ""}
    with pytest.raises(MiningError, match=r"corpus: 2 empty text\(s\), ids \['blank', 'empty'\]"):
        build_quadruplets(synthetic.train.queries, corpus, synthetic.train.qrels)
    with pytest.raises(MiningError, match=r"queries: 1 empty text\(s\), ids \['qx'\]"):
        build_quadruplets({"qx": ""}, synthetic.corpus, synthetic.train.qrels)
    with pytest.raises(MiningError, match=r"corpus is empty"):
        build_quadruplets(synthetic.train.queries, {}, synthetic.train.qrels)


def test_model_as_miner_takes_hard_negatives_from_its_top_k(synthetic, tiny_st):
    """With a model as miner the 10 best non-positives are skipped by default (spec: range_min=10)."""
    from quadbert import FaissRetriever
    from quadbert.mining import MODEL_MINER_SKIP_TOP

    assert MODEL_MINER_SKIP_TOP == 10
    queries = dict(list(synthetic.train.queries.items())[:10])
    args = (queries, synthetic.corpus, synthetic.train.qrels)
    kw = dict(hard_k=20, miner=tiny_st, n_per_query=2, return_ids=True)
    ds = build_quadruplets(*args, **kw)
    retriever = FaissRetriever(tiny_st, "flat")
    retriever.index(synthetic.corpus)
    top = retriever.search(queries, k=20)
    assert len(ds) == 20
    skipped_by_default = {}
    for q, run in top.items():
        ranked = sorted(run, key=run.get, reverse=True)
        skipped_by_default[q] = [d for d in ranked if d not in synthetic.train.qrels[q]][:10]
    for r in ds:
        assert r["hard_negative_id"] in top[r["query_id"]]
        assert r["hard_negative_id"] not in skipped_by_default[r["query_id"]]
        assert r["simple_negative_id"] not in top[r["query_id"]]
        assert r["hard_negative_id"] not in synthetic.train.qrels[r["query_id"]]
    assert build_quadruplets(*args, skip_top=10, **kw).to_list() == ds.to_list()
    unskipped = build_quadruplets(*args, skip_top=0, **kw)
    assert any(r["hard_negative_id"] in skipped_by_default[r["query_id"]] for r in unskipped)


def test_bm25_miner_skips_nothing_by_default(synthetic):
    assert mine(synthetic).to_list() == mine(synthetic, skip_top=0).to_list()
    assert mine(synthetic).to_list() != mine(synthetic, skip_top=10).to_list()
