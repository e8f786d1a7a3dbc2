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


def test_n_hard_gives_numbered_hard_negative_columns(synthetic):
    from quadbert.mining import id_columns, text_columns

    ds = mine(synthetic, n_hard=3, n_per_query=2)
    assert ds.column_names == list(text_columns(3) + id_columns(3))
    assert text_columns(3)[2:5] == ("hard_negative_1", "hard_negative_2", "hard_negative_3")
    bm25 = BM25Retriever()
    bm25.index(synthetic.corpus)
    top = bm25.search(synthetic.train.queries, k=20)
    for r in ds:
        hs = [r[f"hard_negative_{i}_id"] for i in (1, 2, 3)]
        assert len(set(hs)) == 3  # drawn without replacement while the pool lasts
        assert all(h in top[r["query_id"]] for h in hs)
        assert not set(hs) & set(synthetic.train.qrels[r["query_id"]])


def test_model_miner_is_sentence_transformers_mine_hard_negatives(synthetic, tiny_st, monkeypatch):
    """The model path calls ST's miner with our range, margins, prompts and faiss flag."""
    import sentence_transformers.util as st_util

    seen = {}
    real = st_util.mine_hard_negatives

    def spy(dataset, model, **kw):
        seen.update(kw)
        return real(dataset, model, **kw)

    monkeypatch.setattr(st_util, "mine_hard_negatives", spy)
    queries = dict(list(synthetic.train.queries.items())[:8])
    ds = build_quadruplets(
        queries, synthetic.corpus, synthetic.train.qrels, hard_k=30, miner=tiny_st,
        n_per_query=2, n_hard=2, skip_top=3, absolute_margin=None, relative_margin=None,
        max_score=1.5, query_prompt="query: ", document_prompt="passage: ", return_ids=True,
        sampling_strategy="top",
    )  # fmt: skip
    assert (seen["range_min"], seen["range_max"], seen["num_negatives"]) == (3, 30, 4)
    assert (seen["absolute_margin"], seen["max_score"]) == (None, 1.5)
    assert (seen["query_prompt"], seen["corpus_prompt"]) == ("query: ", "passage: ")
    assert seen["output_format"] == "n-tuple" and seen["use_faiss"] is False
    assert len(ds) == 16
    for q in queries:
        rows = [r for r in ds if r["query_id"] == q]
        hs = [r[c] for r in rows for c in ("hard_negative_1_id", "hard_negative_2_id")]
        assert len(set(hs)) == 4  # the query's 4 mined negatives, split over its 2 rows
        pos = set(synthetic.train.qrels[q])
        for r in rows:
            assert r["simple_negative_id"] not in pos | set(hs)
            assert not set(hs) & pos


def test_absolute_margin_filters_false_negatives(synthetic, tiny_st, caplog):
    queries = dict(list(synthetic.train.queries.items())[:6])
    args = (queries, synthetic.corpus, synthetic.train.qrels)
    with pytest.raises(MiningError, match="found 1 negatives for none of the 6 queries"):
        # a margin of 2 on cosine scores rejects every candidate: nothing is left
        build_quadruplets(*args, hard_k=20, miner=tiny_st, absolute_margin=2.0)
    with pytest.raises(MiningError, match=r"apply to a model miner only"):
        build_quadruplets(*args, hard_k=20, absolute_margin=0.1)


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
    top = retriever.search(queries, k=40)
    assert len(ds) == 20
    # ST's range counts non-positives: the pool is ranks 10..20 of the non-positive documents
    skipped_by_default, pool = {}, {}
    for q, run in top.items():
        ranked = sorted(run, key=run.get, reverse=True)
        non_pos = [d for d in ranked if d not in synthetic.train.qrels[q]]
        skipped_by_default[q], pool[q] = non_pos[:10], non_pos[10:20]
    for r in ds:
        assert r["hard_negative_id"] in pool[r["query_id"]]
        assert r["simple_negative_id"] != r["hard_negative_id"]
        assert r["hard_negative_id"] not in synthetic.train.qrels[r["query_id"]]
    assert build_quadruplets(*args, skip_top=10, **kw).to_list() == ds.to_list()
    unskipped = build_quadruplets(*args, skip_top=0, **kw)
    assert any(r["hard_negative_id"] in skipped_by_default[r["query_id"]] for r in unskipped)


def test_bm25_miner_skips_nothing_by_default(synthetic):
    assert mine(synthetic).to_list() == mine(synthetic, skip_top=0).to_list()
    assert mine(synthetic).to_list() != mine(synthetic, skip_top=10).to_list()
