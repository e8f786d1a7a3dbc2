"""Retrieval through quadbert's re-exports of the shared faiss retriever and metrics."""

from __future__ import annotations

import pytest

from quadbert import FaissRetriever, evaluate_run, read_trec_run, write_trec_run


@pytest.fixture(scope="module")
def flat(synthetic, tiny_st_dir):
    from papercore.testing import tiny_sentence_transformer

    r = FaissRetriever(tiny_sentence_transformer(tiny_st_dir), "flat")
    r.index(synthetic.corpus)
    return r


@pytest.fixture(scope="module")
def flat_run(flat, synthetic):
    return flat.search(synthetic.test.queries, k=10)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_every_index_returns_k_results(flat, synthetic, kind):
    r = FaissRetriever(flat.encoder, kind, nlist=4, nprobe=2)
    r.index(synthetic.corpus)
    run = r.search(synthetic.test.queries, k=10)
    assert set(run) == set(synthetic.test.queries)
    assert all(len(docs) == 10 for docs in run.values())


def test_ivf_with_nprobe_equal_nlist_equals_flat(flat, flat_run, synthetic):
    ivf = FaissRetriever(flat.encoder, "ivf", nlist=6, nprobe=6)
    ivf.index(synthetic.corpus)
    run = ivf.search(synthetic.test.queries, k=10)
    for qid, docs in flat_run.items():
        assert list(run[qid]) == list(docs)


def test_save_load_round_trip(flat, flat_run, synthetic, tmp_path):
    flat.save(tmp_path / "idx")
    loaded = FaissRetriever.load(tmp_path / "idx", flat.encoder)
    assert loaded.ntotal == len(synthetic.corpus) and loaded.dim == flat.dim
    assert loaded.search(synthetic.test.queries, k=10) == flat_run


def test_load_with_a_different_dimension_raises(flat, tmp_path):
    from papercore.testing import (
        build_encoder_tokenizer,
        save_model_dir,
        tiny_encoder,
        tiny_sentence_transformer,
    )

    flat.save(tmp_path / "idx")

    tok = build_encoder_tokenizer()
    save_model_dir(tiny_encoder(tokenizer=tok, hidden_size=32), tok, tmp_path / "narrow")
    narrow = tiny_sentence_transformer(tmp_path / "narrow")
    with pytest.raises(ValueError, match="32-dimensional embeddings, but the index"):
        FaissRetriever.load(tmp_path / "idx", narrow)


def test_bad_retrieval_inputs(flat, synthetic):
    with pytest.raises(RuntimeError, match="before searching"):
        FaissRetriever(flat.encoder).search({"q": "comet"})
    with pytest.raises(ValueError, match="use nlist ≤ N/39"):
        FaissRetriever(flat.encoder, "ivf", nlist=1000).index(synthetic.corpus)
    with pytest.warns(UserWarning, match="nprobe=64 > nlist=4: clamped to 4"):
        FaissRetriever(flat.encoder, "ivf", nlist=4, nprobe=64)
    with pytest.raises(ValueError, match=r"empty text\(s\), ids \['e'\]"):
        FaissRetriever(flat.encoder).index({"a": "comet", "e": " "})
    run = flat.search({"q": "comet"}, k=10_000)  # k larger than the corpus is clamped
    assert len(run["q"]) == len(synthetic.corpus)


def test_metrics_and_trec_files(flat_run, synthetic, tmp_path):
    scores = evaluate_run(flat_run, synthetic.test.qrels)
    assert set(scores) == {"MRR@10", "R@10", "R@100", "nDCG@10"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    perfect = {q: {d: 1.0 for d in rel} for q, rel in synthetic.test.qrels.items()}
    assert evaluate_run(perfect, synthetic.test.qrels)["nDCG@10"] == pytest.approx(1.0)
    path = write_trec_run(flat_run, tmp_path / "run.trec", tag="quadbert")
    back = read_trec_run(path)
    assert {q: list(d) for q, d in back.items()} == {q: list(d) for q, d in flat_run.items()}
