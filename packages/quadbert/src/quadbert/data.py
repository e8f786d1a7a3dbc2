"""Retrieval data: BEIR-layout loaders and the synthetic generator of ``papercore.retrieval``, re-exported.

A BEIR folder holds ``corpus.jsonl`` and ``queries.jsonl`` (``{"_id", "text"}``, corpus records may
add ``"title"``) and ``qrels/<split>.tsv`` (``query-id  corpus-id  score``); it loads without the
``beir`` package.
"""

from __future__ import annotations

from papercore.retrieval import (
    RetrievalData,
    SyntheticRetrieval,
    as_qrels,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
    make_synthetic_retrieval,
    save_beir,
)

__all__ = [
    "RetrievalData",
    "SyntheticRetrieval",
    "as_qrels",
    "load_beir",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "make_synthetic_retrieval",
    "save_beir",
]
