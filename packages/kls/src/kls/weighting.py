"""Term weighting shared by KLS and LE: sparse count matrices, BM25 and TF-IDF weighters.

Everything is vectorised: texts are counted once into a scipy CSR matrix (scikit-learn
``CountVectorizer`` with a pluggable tokenizer), and every weight is an element-wise transform of
that matrix's non-zeros. There is no Python loop over words × labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from kls._checks import check_range
from kls.errors import EmptyInputError, NotFittedError
from kls.tokenize import Tokenizer, check_script, resolve_tokenizer

_WORD = re.compile(r"(?u)\b\w\w+\b")


def english_stopwords() -> frozenset[str]:
    """The English stopword list of bm25s (the BM25 library the spec names), as the workspace's
    BM25 (:class:`papercore.retrieval.BM25Index`) uses it."""
    from papercore.retrieval.bm25 import stopword_list

    return stopword_list("en")


def word_tokenize(text: str) -> list[str]:
    """Lower-cased ``\\w\\w+`` words (the bm25s / scikit-learn default pattern)."""
    return _WORD.findall(text.lower())


class TermCounter:
    """Texts → sparse ``[n, V]`` term-count matrix with a fixed vocabulary learnt at ``fit``."""

    def __init__(self, tokenizer: Tokenizer, stopwords: frozenset[str] | None = None):
        self.tokenizer = tokenizer
        self.stopwords = stopwords or frozenset()
        analyzer = tokenizer if not self.stopwords else self._filtered
        self._cv = CountVectorizer(analyzer=analyzer, lowercase=False, dtype=np.float64)

    def _filtered(self, text: str) -> list[str]:
        sw = self.stopwords
        return [t for t in self.tokenizer(text) if t not in sw]

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        try:
            X = self._cv.fit_transform(texts)
        except ValueError as e:  # "empty vocabulary"
            raise EmptyInputError(f"no tokens in any of the {len(texts)} texts ({e})") from None
        self.vocabulary_ = self._cv.vocabulary_
        self.terms_ = np.asarray(self._cv.get_feature_names_out(), dtype=object)
        return X.tocsr()

    @classmethod
    def from_terms(
        cls, tokenizer: Tokenizer, terms: Sequence[str], stopwords: frozenset[str] | None = None
    ) -> TermCounter:
        """A fitted counter with the given vocabulary (column ``j`` = ``terms[j]``), e.g. after loading."""
        self = cls(tokenizer, stopwords)
        self.terms_ = np.asarray(list(terms), dtype=object)
        self.vocabulary_ = {str(t): j for j, t in enumerate(self.terms_)}
        self._cv.vocabulary = self.vocabulary_
        self._cv.fixed_vocabulary_ = True
        self._cv.vocabulary_ = self.vocabulary_
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if not hasattr(self, "vocabulary_"):
            raise NotFittedError("call fit before transform")
        return self._cv.transform(texts).tocsr()


def saturate(
    X: sp.csr_matrix, k: float | np.ndarray, numerator: float | None = None
) -> sp.csr_matrix:
    """Element-wise ``f · num / (f + k)`` on the non-zeros (``num = k`` unless given); ``k`` may be per row."""
    X = X.tocsr(copy=True)
    f = X.data
    if np.ndim(k) == 0:
        kk = float(k)
    else:  # one k per row, expanded to the non-zeros
        kk = np.repeat(np.asarray(k, dtype=np.float64), np.diff(X.indptr))
    num = kk if numerator is None else numerator
    X.data = f * num / (f + kk)
    return X


@runtime_checkable
class TermWeighter(Protocol):
    """Something that learns corpus statistics and gives each word of a text a weight."""

    def fit(self, corpus: Sequence[str]) -> TermWeighter: ...

    def weights(self, text: str) -> dict[str, float]: ...


class BM25Weighter:
    """BM25 weight of each term inside a text (Lucene IDF), computed on sparse matrices.

    ``w(t | x) = idf(t) · f(t,x)·(k1+1) / (f(t,x) + k1·(1 − b + b·|x|/avgdl))``,
    ``idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))`` with N, df, avgdl from the fitted corpus.
    Words: lower-cased ``\\w\\w+`` (the bm25s pattern) without stopwords, unless ``tokenizer`` is given.
    """

    def __init__(
        self,
        k1: float = 1.2,
        b: float = 0.75,
        stopwords: str | frozenset[str] | None = "en",
        tokenizer: Any = None,
    ):
        self.k1 = check_range("k1", k1, low=0.0)
        self.b = check_range("b", b, low=0.0, high=1.0)
        self.stopwords = _stopwords(stopwords)
        self._user_tokenizer = tokenizer
        self.tokenizer = word_tokenize if tokenizer is None else resolve_tokenizer(tokenizer)

    def fit(self, corpus: Sequence[str]) -> BM25Weighter:
        corpus = list(corpus)
        if not corpus:
            raise EmptyInputError("BM25Weighter.fit needs at least one text, got none")
        if self._user_tokenizer is None:
            check_script(corpus, None)
        self.counter_ = TermCounter(self.tokenizer, self.stopwords)
        X = self.counter_.fit_transform(corpus)
        n = X.shape[0]
        df = np.asarray((X > 0).sum(axis=0)).ravel()
        self.idf_ = np.log1p((n - df + 0.5) / (df + 0.5))
        self.avgdl_ = float(X.sum() / n) or 1.0
        return self

    @property
    def vocabulary_(self) -> dict[str, int]:
        return self.counter_.vocabulary_

    @property
    def terms_(self) -> np.ndarray:
        return self.counter_.terms_

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        """``[n, V]`` sparse BM25 term weights of each text (unseen words are dropped)."""
        if not hasattr(self, "idf_"):
            raise NotFittedError("BM25Weighter: call fit(corpus) first")
        X = self.counter_.transform(list(texts))
        dl = np.asarray(X.sum(axis=1)).ravel()
        K = self.k1 * (1.0 - self.b + self.b * dl / self.avgdl_)
        W = saturate(X, K, numerator=self.k1 + 1.0)  # f·(k1+1) / (f + K)
        return (W @ sp.diags(self.idf_)).tocsr()

    def weights(self, text: str) -> dict[str, float]:
        row = self.matrix([text])
        return {self.terms_[j]: float(v) for j, v in zip(row.indices, row.data, strict=True)}


class TfidfWeighter:
    """TF-IDF weight of each term inside a text (scikit-learn ``TfidfVectorizer``, L2-normalised)."""

    def __init__(self, sublinear_tf: bool = True, stopwords: str | frozenset[str] | None = "en"):
        self.sublinear_tf = sublinear_tf
        self.stopwords = _stopwords(stopwords)

    def fit(self, corpus: Sequence[str]) -> TfidfWeighter:
        from sklearn.feature_extraction.text import TfidfVectorizer

        corpus = list(corpus)
        if not corpus:
            raise EmptyInputError("TfidfWeighter.fit needs at least one text, got none")
        check_script(corpus, None)
        sw = self.stopwords

        def analyzer(text: str) -> list[str]:
            return [w for w in word_tokenize(text) if w not in sw]

        self.vectorizer_ = TfidfVectorizer(analyzer=analyzer, sublinear_tf=self.sublinear_tf)
        self.vectorizer_.fit(corpus)
        self.vocabulary_ = self.vectorizer_.vocabulary_
        self.terms_ = np.asarray(self.vectorizer_.get_feature_names_out(), dtype=object)
        return self

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        if not hasattr(self, "vectorizer_"):
            raise NotFittedError("TfidfWeighter: call fit(corpus) first")
        return self.vectorizer_.transform(list(texts)).tocsr()

    def weights(self, text: str) -> dict[str, float]:
        row = self.matrix([text])
        return {self.terms_[j]: float(v) for j, v in zip(row.indices, row.data, strict=True)}


def _stopwords(stopwords: str | frozenset[str] | Sequence[str] | None) -> frozenset[str]:
    if stopwords is None:
        return frozenset()
    if isinstance(stopwords, str):
        if stopwords.lower() in ("en", "english"):
            return english_stopwords()
        raise ValueError(
            f"unknown stopword list {stopwords!r}; expected 'en', a set of words, or None"
        )
    return frozenset(stopwords)


def idf_reference(n: int, df: np.ndarray) -> np.ndarray:
    """The reference KLS IDF: ``ln(N / df) + 1`` (0 where ``df = 0``)."""
    out = np.zeros(df.shape, dtype=np.float64)
    nz = df > 0
    out[nz] = np.log(n / df[nz]) + 1.0
    return out


__all__ = [
    "BM25Weighter",
    "TermCounter",
    "TermWeighter",
    "TfidfWeighter",
    "english_stopwords",
    "idf_reference",
    "saturate",
    "word_tokenize",
]
