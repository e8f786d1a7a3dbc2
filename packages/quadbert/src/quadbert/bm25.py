"""quadbert's BM25 (hard-negative miner and lexical baseline): papercore's :class:`BM25Index` with
quadbert's settings."""

from __future__ import annotations

from typing import Any

from papercore.retrieval.bm25 import BM25Index


class BM25Retriever(BM25Index):
    """:class:`papercore.retrieval.BM25Index` with quadbert's ``k1=1.5`` (bm25s' own default); the
    other settings are papercore's defaults (``b=0.75``, Lucene variant, English stop words,
    ``keep_zero_scores=False``) and can be passed as keywords.

    ``search`` returns a run ``{qid: {doc_id: score}}`` holding only documents with a positive score
    (a document sharing no term with the query is not "ranked" by BM25), so the miner's hard pool
    never holds arbitrary non-matching documents. ``k`` larger than the corpus is clamped to the
    corpus size.
    """

    def __init__(self, *, k1: float = 1.5, **kwargs: Any) -> None:
        super().__init__(k1=k1, **kwargs)


__all__ = ["BM25Retriever"]
