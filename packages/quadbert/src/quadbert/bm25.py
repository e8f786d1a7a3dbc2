"""BM25 over a ``{doc_id: text}`` corpus with ``bm25s``: the hard-negative miner and the lexical baseline."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class BM25Retriever:
    """Lexical retrieval with ``bm25s`` (Lucene BM25, English stop words removed).

    ``search`` returns a run ``{qid: {doc_id: score}}`` holding only documents with a positive score
    (a document sharing no term with the query is not "ranked" by BM25). ``k`` larger than the
    corpus is clamped to the corpus size (bm25s itself raises).
    """

    def __init__(
        self, *, k1: float = 1.5, b: float = 0.75, method: str = "lucene", stopwords: str = "en"
    ) -> None:
        self.k1, self.b, self.method, self.stopwords = k1, b, method, stopwords
        self._bm25 = None
        self._ids: list[str] = []

    @property
    def ntotal(self) -> int:
        return len(self._ids)

    def index(self, corpus: dict[str, str]) -> None:
        import bm25s

        # bm25s sets its own logger to DEBUG on import, which floods any root handler
        logging.getLogger("bm25s").setLevel(logging.WARNING)

        if not corpus:
            raise ValueError("cannot index an empty corpus")
        self._ids = list(corpus)
        tokens = bm25s.tokenize(
            list(corpus.values()), stopwords=self.stopwords, show_progress=False
        )
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        self._bm25.index(tokens, show_progress=False)

    def search(self, queries: dict[str, str], k: int = 100) -> dict[str, dict[str, float]]:
        import bm25s

        if self._bm25 is None:
            raise RuntimeError("BM25Retriever.search called before index(corpus)")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not queries:
            return {}
        k = min(k, len(self._ids))
        tokens = bm25s.tokenize(
            list(queries.values()), stopwords=self.stopwords, show_progress=False
        )
        docs, scores = self._bm25.retrieve(tokens, k=k, show_progress=False)
        run: dict[str, dict[str, float]] = {}
        for qid, row, row_scores in zip(queries, docs, scores, strict=True):
            run[qid] = {
                self._ids[int(i)]: float(sc)
                for i, sc in zip(row, row_scores, strict=True)
                if sc > 0
            }
        return run
