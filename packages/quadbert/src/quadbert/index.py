"""Retrieval: the shared faiss retriever and IR metrics of ``papercore.retrieval``, re-exported.

``FaissRetriever(model, index="flat"|"ivf"|"hnsw", nlist=, nprobe=16, hnsw_m=32, ef_search=128)``
encodes the corpus with the bi-encoder, L2-normalises, and searches by inner product (IVF is the
paper's inverted-index ANN); ``evaluate_run`` computes MRR@10, R@10, R@100, nDCG@10 with ir_measures.
"""

from __future__ import annotations

from papercore.retrieval import (
    FaissRetriever,
    evaluate_run,
    per_query,
    read_trec_run,
    write_trec_run,
)

__all__ = ["FaissRetriever", "evaluate_run", "per_query", "read_trec_run", "write_trec_run"]
