"""Lexical retrieval with BM25 over a ``{docid: text}`` corpus, on ``bm25s``: the one BM25 of the workspace.

Score of document d for query q (``method="lucene"``, the default; Kamphuis et al., ECIR 2020)::

    score(q, d) = Σ_{t ∈ q} idf(t) · f(t, d) / (f(t, d) + k1 · (1 − b + b · |d| / avgdl))
    idf(t)      = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))

f(t, d) = count of term t in d, |d| = number of terms of d (after stop-word removal), avgdl = mean
|d|, N = number of documents, df(t) = documents containing t. A query term counts once per
occurrence. This is bm25s' Lucene variant: Lucene ≥ 8 drops the constant ``(k1 + 1)`` factor of
the classic numerator, which changes no ranking. ``"robertson"`` uses ``idf = ln((N − df + 0.5) /
(df + 0.5))`` clipped at 0, ``"atire"`` ``idf = ln(N / df)`` and the ``(k1 + 1)`` numerator.

Words: lower-cased ``\\w\\w+`` runs (bm25s' and scikit-learn's default pattern) minus a stop-word
list (English by default), unless a ``tokenizer`` callable is given (e.g. a Chinese segmenter); its
tokens are used as they come (no lower-casing), minus the stop words.

Zero scores: every supported variant scores ≥ 0, and with ``"lucene"`` a document scores 0 exactly
when it shares no term with the query. Such a document is not *ranked* by BM25: when fewer than
``k`` documents match, bm25s fills the top-k with zero-score documents in an arbitrary order.
``keep_zero_scores=False`` (the default) drops them, so a run holds only documents with evidence;
``True`` keeps bm25s' full top-k (exactly ``min(k, N)`` hits per query).
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np

from papercore.errors import BackendUnavailableError, MalformedInputError
from papercore.retrieval.data import Run

logger = logging.getLogger(__name__)

Method = Literal["lucene", "robertson", "atire"]
METHODS: tuple[str, ...] = ("lucene", "robertson", "atire")

_WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenize's (and scikit-learn's) default token_pattern

# stop-word lists shipped by bm25s (module bm25s.stopwords), by the names bm25s accepts
_STOPWORD_LISTS = {
    "en": "STOPWORDS_EN",
    "english": "STOPWORDS_EN",
    "en_plus": "STOPWORDS_EN_PLUS",
    "english_plus": "STOPWORDS_EN_PLUS",
    "de": "STOPWORDS_GERMAN",
    "german": "STOPWORDS_GERMAN",
    "nl": "STOPWORDS_DUTCH",
    "dutch": "STOPWORDS_DUTCH",
    "fr": "STOPWORDS_FRENCH",
    "french": "STOPWORDS_FRENCH",
    "es": "STOPWORDS_SPANISH",
    "spanish": "STOPWORDS_SPANISH",
    "pt": "STOPWORDS_PORTUGUESE",
    "portuguese": "STOPWORDS_PORTUGUESE",
    "it": "STOPWORDS_ITALIAN",
    "italian": "STOPWORDS_ITALIAN",
    "ru": "STOPWORDS_RUSSIAN",
    "russian": "STOPWORDS_RUSSIAN",
    "sv": "STOPWORDS_SWEDISH",
    "swedish": "STOPWORDS_SWEDISH",
    "no": "STOPWORDS_NORWEGIAN",
    "norwegian": "STOPWORDS_NORWEGIAN",
    "zh": "STOPWORDS_CHINESE",
    "chinese": "STOPWORDS_CHINESE",
    "tr": "STOPWORDS_TURKISH",
    "turkish": "STOPWORDS_TURKISH",
    "ko": "STOPWORDS_KOREAN",
    "korean": "STOPWORDS_KOREAN",
    "da": "STOPWORDS_DANISH",
    "danish": "STOPWORDS_DANISH",
}

Tokenizer = Callable[[str], list[str]]


def import_bm25s() -> Any:
    """Import ``bm25s`` or raise :class:`BackendUnavailableError` with the install command."""
    try:
        import bm25s
    except ImportError as e:
        raise BackendUnavailableError(
            'BM25Index needs bm25s, which is not installed: pip install "papercore[retrieval]"'
        ) from e
    # bm25s sets its own logger to DEBUG at import, which floods any root handler
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def stopword_list(stopwords: str | Iterable[str] | None) -> frozenset[str]:
    """A stop-word set: a bm25s list by name (``"en"``, ``"english"``, ``"zh"``, ``"de"``, …),
    any iterable of words, or ``None`` (no stop words)."""
    if stopwords is None:
        return frozenset()
    if isinstance(stopwords, str):
        attr = _STOPWORD_LISTS.get(stopwords.lower())
        if attr is None:
            raise MalformedInputError(
                f"unknown stop-word list {stopwords!r}; expected one of "
                f"{sorted(_STOPWORD_LISTS)}, a collection of words, or None"
            )
        import_bm25s()
        from bm25s import stopwords as lists

        return frozenset(getattr(lists, attr))
    words = list(stopwords)
    bad = [w for w in words if not isinstance(w, str)]
    if bad:
        raise MalformedInputError(f"stop words must be strings, got {bad[:5]!r}")
    return frozenset(words)


def word_tokenize(text: str) -> list[str]:
    """The default tokenizer: lower-cased ``\\w\\w+`` words (what ``bm25s.tokenize`` splits on)."""
    return _WORD.findall(text.lower())


class BM25Index:
    """BM25 retrieval over a ``{docid: text}`` corpus (bm25s).

    Args:
        k1: term-frequency saturation (≥ 0). 1.2 is the classic value (bm25s' own default is 1.5).
        b: document-length normalisation, in [0, 1].
        method: ``"lucene"`` (default), ``"robertson"`` or ``"atire"`` (module docstring).
        stopwords: a bm25s list name (``"en"`` default, ``"zh"``, …), a collection of words, or
            ``None``.
        tokenizer: ``None`` (lower-cased ``\\w\\w+`` words), a callable ``str -> list[str]`` or an
            object with such a ``.tokenize`` method (a transformers tokenizer, a Chinese segmenter).
            Its tokens are used as given; empty tokens are dropped.
        keep_zero_scores: keep hits with score 0 (with ``"lucene"``: exactly the documents sharing
            no term with the query) in :meth:`search`'s runs. Default ``False``: a run holds only documents with a positive
            score, so it may hold fewer than ``k``. Pass it explicitly where it matters.

    ``index(corpus)`` then ``search(queries, k)`` → ``{qid: {docid: score}}``, best first (the
    shape of :class:`~papercore.retrieval.FaissRetriever`); ``scores(query)`` is the full score
    vector in corpus order. ``k`` larger than the corpus is clamped to it (bm25s itself raises).
    """

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        method: Method = "lucene",
        stopwords: str | Iterable[str] | None = "en",
        tokenizer: Tokenizer | Any | None = None,
        keep_zero_scores: bool = False,
    ) -> None:
        for name, value in (("k1", k1), ("b", b)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise MalformedInputError(f"{name} must be a number, got {type(value).__name__}")
        if not np.isfinite(k1) or k1 < 0:
            raise MalformedInputError(f"k1 must be a finite number >= 0, got {k1}")
        if not 0.0 <= b <= 1.0:
            raise MalformedInputError(f"b must be in [0, 1], got {b}")
        if method not in METHODS:
            raise MalformedInputError(f"method must be one of {METHODS}, got {method!r}")
        if not isinstance(keep_zero_scores, bool):
            raise MalformedInputError(
                f"keep_zero_scores must be True or False, got {keep_zero_scores!r}"
            )
        self.k1, self.b, self.method = float(k1), float(b), method
        self.keep_zero_scores = keep_zero_scores
        self.stopwords = stopword_list(stopwords)
        self.tokenizer: Tokenizer = _resolve_tokenizer(tokenizer)
        self.ids: list[str] = []
        self._bm25: Any = None

    # ------------------------------------------------------------------ properties
    @property
    def ntotal(self) -> int:
        """Number of indexed documents."""
        return len(self.ids)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(k1={self.k1}, b={self.b}, method={self.method!r}, "
            f"keep_zero_scores={self.keep_zero_scores}, ntotal={self.ntotal})"
        )

    # ------------------------------------------------------------------ building
    def tokenize(self, text: str) -> list[str]:
        """The terms BM25 counts in ``text``: the tokenizer's tokens minus stop words and empty tokens."""
        tokens = self.tokenizer(text)
        if not isinstance(tokens, list | tuple):
            raise MalformedInputError(
                f"tokenizer must return a list of strings, got {type(tokens).__name__}"
            )
        sw = self.stopwords
        out = []
        for t in tokens:
            if not isinstance(t, str):
                raise MalformedInputError(
                    f"tokenizer must return a list of strings, got an item of type {type(t).__name__}"
                )
            if t and t not in sw:
                out.append(t)
        return out

    def index(self, corpus: Mapping[str, str]) -> None:
        """Index ``corpus`` (``{docid: text}``), replacing any previous index.

        Raises :class:`MalformedInputError` for an empty corpus, a blank text (ids listed), or a
        corpus in which no document has a single term left after stop-word removal.
        """
        from papercore.retrieval.faiss_index import check_texts

        check_texts(corpus, "corpus")
        if not corpus:
            raise MalformedInputError(
                "corpus is empty: BM25Index.index needs at least one document"
            )
        ids = [str(i) for i in corpus]
        tokens = [self.tokenize(corpus[i]) for i in corpus]
        if not any(tokens):
            raise MalformedInputError(
                f"none of the {len(ids)} documents has a term left after tokenisation and "
                f"stop-word removal (stopwords: {len(self.stopwords)} words)"
            )
        n_empty = sum(not t for t in tokens)
        if n_empty:
            logger.warning(
                "%d of %d documents have no term after stop-word removal; they score 0 for every query",
                n_empty,
                len(ids),
            )
        bm25s = import_bm25s()
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        bm25.index(tokens, show_progress=False)
        self._bm25, self.ids = bm25, ids

    # ------------------------------------------------------------------ searching
    def _check_ready(self) -> None:
        if self._bm25 is None:
            raise RuntimeError("BM25Index is empty: call index(corpus) before searching")

    def _query_tokens(self, queries: Mapping[str, str]) -> list[list[str]]:
        from papercore.retrieval.faiss_index import check_texts

        check_texts(queries, "queries")
        tokens = [self.tokenize(queries[q]) for q in queries]
        no_terms = [q for q, t in zip(queries, tokens, strict=True) if not t]
        if no_terms:
            logger.warning(
                "%d of %d queries have no term after stop-word removal (every document scores 0); "
                "first: %s",
                len(no_terms),
                len(tokens),
                no_terms[:5],
            )
        return tokens

    def scores(self, query: str) -> np.ndarray:
        """BM25 scores of ``query`` against every indexed document: float32 ``[ntotal]``, corpus order."""
        self._check_ready()
        if not isinstance(query, str) or not query.strip():
            raise MalformedInputError(f"query must be a non-blank string, got {query!r}")
        tokens = self.tokenize(query)
        if not tokens:
            logger.warning("query %r has no term after stop-word removal: every score is 0", query)
            return np.zeros(self.ntotal, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)

    def search_arrays(
        self, queries: Mapping[str, str], k: int = 100
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k as arrays: (document positions ``[n_q, k']`` int, scores ``[n_q, k']`` float32),
        best first, ``k' = min(k, ntotal)``; zero scores are *not* filtered here.

        Positions index :attr:`ids`. Ties keep bm25s' order.
        """
        self._check_ready()
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise MalformedInputError(f"k must be an integer >= 1, got {k!r}")
        tokens = self._query_tokens(queries)
        kk = min(int(k), self.ntotal)
        if kk < k:
            logger.debug("k=%d > %d indexed documents: clamped to %d", k, self.ntotal, kk)
        if not tokens:
            return np.empty((0, kk), dtype=np.int64), np.empty((0, kk), dtype=np.float32)
        docs, scores = self._bm25.retrieve(
            tokens, k=kk, show_progress=False, n_threads=0, backend_selection="numpy"
        )
        return np.asarray(docs, dtype=np.int64), np.asarray(scores, dtype=np.float32)

    def search(self, queries: Mapping[str, str], k: int = 100) -> Run:
        """Top-``k`` per query as a run ``{qid: {docid: score}}``, best first.

        ``k`` is clamped to the corpus size. Without ``keep_zero_scores`` a query's hits stop at
        the last positive score (a query sharing no term with any document gets ``{}``).
        Raises :class:`MalformedInputError` for a blank query text or ``k < 1``.
        """
        self._check_ready()
        if not isinstance(queries, Mapping):
            raise MalformedInputError(
                f"queries must be a dict id -> text, got {type(queries).__name__}"
            )
        if not queries:
            return {}
        docs, scores = self.search_arrays(queries, k)
        run: Run = {}
        for qid, row, row_scores in zip(queries, docs, scores, strict=True):
            hits = {self.ids[int(i)]: float(s) for i, s in zip(row, row_scores, strict=True)}
            if not self.keep_zero_scores:
                hits = {d: s for d, s in hits.items() if s > 0.0}
            run[str(qid)] = hits
        return run


def _resolve_tokenizer(tokenizer: Any) -> Tokenizer:
    if tokenizer is None:
        return word_tokenize
    if callable(getattr(tokenizer, "tokenize", None)):
        return tokenizer.tokenize
    if callable(tokenizer):
        return tokenizer
    raise MalformedInputError(
        "tokenizer must be None, a callable str -> list[str] or an object with .tokenize, "
        f"got {type(tokenizer).__name__}"
    )


__all__ = [
    "METHODS",
    "BM25Index",
    "import_bm25s",
    "stopword_list",
    "word_tokenize",
]
