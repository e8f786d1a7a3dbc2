"""Asymmetric (prompted) models: our retrieval equals sentence-transformers' evaluator, which uses the prompts."""

from __future__ import annotations

import pytest

from quadbert import FaissRetriever, evaluate_run

PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="module")
def prompted(tiny_st_dir):
    """The tiny BERT with E5-style prompts configured (``encode_query`` / ``encode_document`` use them)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    word = modules.Transformer(str(tiny_st_dir), max_seq_length=128)
    pool = modules.Pooling(int(word.auto_model.config.hidden_size), pooling_mode="mean")
    return SentenceTransformer(modules=[word, pool], device="cpu", prompts=PROMPTS).eval()


def test_mrr_equals_information_retrieval_evaluator_with_prompts(prompted, synthetic):
    from quadbert.train import ir_evaluator

    st = ir_evaluator(synthetic.test, name="t")(prompted)
    r = FaissRetriever(prompted, "flat")
    r.index(synthetic.corpus)
    ours = evaluate_run(r.search(synthetic.test.queries, k=100), synthetic.test.qrels)
    assert ours["MRR@10"] == pytest.approx(st["t_cosine_mrr@10"], abs=1e-9)
    assert ours["nDCG@10"] == pytest.approx(st["t_cosine_ndcg@10"], abs=1e-9)
    assert ours["R@100"] == pytest.approx(st["t_cosine_recall@100"], abs=1e-9)

    # the prompts matter: the same model without them (plain encode) scores otherwise
    bare = FaissRetriever(prompted, "flat")
    bare.add(list(synthetic.corpus), bare.encode(list(synthetic.corpus.values())))
    qids = list(synthetic.test.queries)
    ids, scores = bare.search_embeddings(
        bare.encode([synthetic.test.queries[q] for q in qids]), k=100
    )
    run = {
        q: dict(zip(i, s.tolist(), strict=False)) for q, i, s in zip(qids, ids, scores, strict=True)
    }
    assert evaluate_run(run, synthetic.test.qrels)["MRR@10"] != pytest.approx(ours["MRR@10"])


def test_explicit_prompts_and_lengths_override_the_models(prompted, synthetic):
    docs = dict(list(synthetic.corpus.items())[:40])
    r = FaissRetriever(prompted, "flat", query_prompt="search_query: ", document_max_length=8)
    emb = r.encode_queries(["a comet"])
    ref = prompted.encode_query(["a comet"], prompt="search_query: ", convert_to_numpy=True)
    assert abs(emb - ref).max() < 1e-5
    r.index(docs)
    assert prompted.max_seq_length == 128  # restored after the document pass
    short = prompted.encode_document(list(docs.values())[:3], convert_to_numpy=True)
    prompted.max_seq_length = 8
    try:
        truncated = prompted.encode_document(list(docs.values())[:3], convert_to_numpy=True)
    finally:
        prompted.max_seq_length = 128
    got = r.faiss_index.reconstruct_n(0, 3)
    norm = truncated / ((truncated**2).sum(axis=1, keepdims=True) ** 0.5)
    assert abs(got - norm).max() < 1e-5 and abs(short - truncated).max() > 1e-3
