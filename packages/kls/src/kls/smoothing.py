"""KLS: keyword-based soft labels for classification (the reference algorithm, §2.0, and variants, §2.2).

Default (``keyword_source="reference"``) reproduces the authors' public reference implementation:

1. label–word relevance, BM25 with each label as one document [from code]::

       K_i      = k1 · (1 − b + b · len_i / avglen)
       wlc_i(w) = f_i(w) · k1 / (f_i(w) + K_i)           # numerator f·k1, not f·(k1+1)
       wlw(w)   = ln(L / L_w) + 1
       wlr_i(w) = wlc_i(w) · wlw(w)

2. instance–word weight: ``wic(w) = f_x(w)·k2/(f_x(w)+k2)``, ``wiw(w) = ln(N/df(w)) + 1``,
   ``wir(w) = wiw(w)·wic(w)``;
3. ``s_i(x) = Σ_{w∈set(x)} wlr_i(w)·wir(w)`` and ``q(x) = softmax(s(x) / avg_token_len)``.

Defaults k1 = 2.0, b = 0.75, k2 = 2.0; whitespace tokens; statistics from the training split only.
``transform`` returns q(x), the target of the reference's auxiliary head (see
:func:`kls.losses.two_head_loss`). With ``alpha`` set it returns the §2.1 mixture
``ỹ = (1 − α)·y + α·q`` instead [inferred]. All of it runs on scipy sparse matrices.

The §2.2 variants [inferred] pick top-K keywords per class (``"ctfidf"``, ``"chi2"``,
``"label_names"``, ``"given"``) and score instances against them (``relevance="bm25"`` or
``"tfidf_cosine"``), then ``q = softmax((r / max_c r) / τ)``.
:class:`UniformLabelSmoother` is the classic label-smoothing baseline (Szegedy et al. 2016) in the
same shape.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from kls._checks import check_range
from kls._math import mix, one_hot, softmax_rows
from kls.errors import (
    EmptyInputError,
    NotFittedError,
    OutOfRangeError,
    SingleClassError,
    TooFewExamplesError,
    UnknownLabelError,
)
from kls.tokenize import check_script, resolve_tokenizer
from kls.weighting import TermCounter, _stopwords, idf_reference, saturate

logger = logging.getLogger(__name__)

KeywordSource = Literal["reference", "ctfidf", "chi2", "label_names", "given"]
Relevance = Literal["reference", "bm25", "tfidf_cosine"]


class _LabelEncoding:
    """Shared label bookkeeping of the smoothers: classes, index lookup, clear errors."""

    classes_: list[Any]

    def _fit_labels(self, labels: Sequence[Any], min_per_class: int) -> np.ndarray:
        labels = list(labels)
        if any(isinstance(y, (list, tuple, set, np.ndarray)) for y in labels):
            raise NotImplementedError(
                "multi-label input (a list of labels per text) is not supported; give one label per text"
            )
        try:
            self.classes_ = sorted(set(labels))
        except TypeError:
            self.classes_ = sorted(set(labels), key=str)
        if len(self.classes_) < 2:
            raise SingleClassError(
                f"soft labels need at least 2 classes; the training labels hold only {self.classes_}"
            )
        self._index = {c: i for i, c in enumerate(self.classes_)}
        idx = np.fromiter((self._index[y] for y in labels), dtype=np.int64, count=len(labels))
        counts = np.bincount(idx, minlength=len(self.classes_))
        few = [self.classes_[i] for i in np.flatnonzero(counts < min_per_class)]
        if few:
            raise TooFewExamplesError(
                f"class(es) {few} have fewer than {min_per_class} training texts; "
                f"counts: { {c: int(n) for c, n in zip(self.classes_, counts, strict=True)} }"
            )
        self.class_counts_ = counts
        return idx

    def label_index(self, labels: Sequence[Any]) -> np.ndarray:
        """Class indices of ``labels``; :class:`UnknownLabelError` lists labels not seen at fit time."""
        if not hasattr(self, "_index"):
            raise NotFittedError(f"{type(self).__name__}: call fit(texts, labels) first")
        labels = list(labels)
        if any(isinstance(y, (list, tuple, set, np.ndarray)) for y in labels):
            raise NotImplementedError("multi-label input is not supported; give one label per text")
        unknown = sorted({y for y in labels if y not in self._index}, key=str)
        if unknown:
            raise UnknownLabelError(
                f"labels {unknown} were not seen at fit time; known labels: {self.classes_}"
            )
        return np.fromiter((self._index[y] for y in labels), dtype=np.int64, count=len(labels))

    def to_dataset(
        self,
        ds: Any,
        text_col: str = "text",
        label_col: str = "label",
        out_col: str = "soft_label",
    ) -> Any:
        """Return ``ds`` (a 🤗 ``datasets.Dataset``) with the soft labels added as ``out_col`` (list[float])."""
        for col in (text_col, label_col):
            if col not in ds.column_names:
                raise KeyError(f"dataset has no column {col!r}; has {ds.column_names}")
        soft = self.transform(ds[text_col], ds[label_col])
        if out_col in ds.column_names:
            ds = ds.remove_columns(out_col)
        return ds.add_column(out_col, soft.astype(np.float32).tolist())


class KeywordLabelSmoother(_LabelEncoding):
    """Keyword label smoothing (KLS): per-text soft labels from label–keyword relevance.

    Args:
        keyword_source: ``"reference"`` (§2.0, default: every training word weighted by label-level BM25),
            or a §2.2 variant [inferred]: ``"ctfidf"``, ``"chi2"``, ``"label_names"``, ``"given"``.
        relevance: how a text is scored against the keywords. ``None`` picks ``"reference"`` for the
            reference source and ``"bm25"`` otherwise; ``"tfidf_cosine"`` is the cheap alternative.
        alpha: §2.1 mixing weight α ∈ [0, 1). ``None`` (default) returns q itself, the reference's
            auxiliary-head target.
        tau: softmax temperature τ > 0. ``None`` means the reference's average training-text length
            (reference relevance) or 0.5 (§2.2 variants).
        k1, b, k2: BM25 constants of the reference (2.0, 0.75, 2.0).
        top_k: keywords per class for the §2.2 variants (default 50).
        bm25_k1, bm25_b: BM25 constants of the §2.2 instance scoring (1.2, 0.75).
        exclude_gold: renormalise q over non-gold classes before mixing (needs ``alpha``).
        class_prior_correction: divide q by the class prior^γ and renormalise (γ = ``prior_gamma``).
        keywords: ``{label: {word: weight}}`` for ``keyword_source="given"``.
        label_names: ``{label: name}`` for ``"label_names"`` (default: ``str(label)``);
            ``seed_words``: extra ``{label: [words]}``.
        tokenizer: ``None`` (whitespace, as the reference), a transformers tokenizer, or a callable.
        lowercase: lower-case text before tokenising (the reference does not).
        stopwords: ``None`` (reference default), ``"en"`` or a set of words to drop.
        allow_fallback: when a class has no extractable keyword, fall back to its label name.
    """

    def __init__(
        self,
        keyword_source: KeywordSource = "reference",
        relevance: Relevance | None = None,
        alpha: float | None = None,
        tau: float | None = None,
        *,
        k1: float = 2.0,
        b: float = 0.75,
        k2: float = 2.0,
        top_k: int = 50,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        exclude_gold: bool = False,
        class_prior_correction: bool = False,
        prior_gamma: float = 0.5,
        keywords: Mapping[Any, Mapping[str, float]] | None = None,
        label_names: Mapping[Any, str] | None = None,
        seed_words: Mapping[Any, Sequence[str]] | None = None,
        tokenizer: Any = None,
        lowercase: bool = False,
        stopwords: str | frozenset[str] | None = None,
        allow_fallback: bool = False,
        seed: int = 0,
    ):
        sources = ("reference", "ctfidf", "chi2", "label_names", "given")
        if keyword_source not in sources:
            raise ValueError(f"keyword_source must be one of {sources}, got {keyword_source!r}")
        if relevance is None:
            relevance = "reference" if keyword_source == "reference" else "bm25"
        if relevance not in ("reference", "bm25", "tfidf_cosine"):
            raise ValueError(
                f"relevance must be 'reference', 'bm25' or 'tfidf_cosine', got {relevance!r}"
            )
        if (relevance == "reference") != (keyword_source == "reference"):
            raise ValueError(
                "relevance='reference' goes with keyword_source='reference' only "
                f"(got keyword_source={keyword_source!r}, relevance={relevance!r})"
            )
        self.keyword_source = keyword_source
        self.relevance_kind = relevance
        self.alpha = (
            None
            if alpha is None
            else check_range("alpha", alpha, low=0.0, high=1.0, high_open=True)
        )
        self.tau = None if tau is None else check_range("tau", tau, low=0.0, low_open=True)
        self.k1 = check_range("k1", k1, low=0.0, low_open=True)
        self.b = check_range("b", b, low=0.0, high=1.0)
        self.k2 = check_range("k2", k2, low=0.0, low_open=True)
        if int(top_k) != top_k or top_k < 1:
            raise OutOfRangeError(f"top_k must be an integer >= 1, got {top_k!r}")
        self.top_k = int(top_k)
        self.bm25_k1 = check_range("bm25_k1", bm25_k1, low=0.0)
        self.bm25_b = check_range("bm25_b", bm25_b, low=0.0, high=1.0)
        if exclude_gold and alpha is None:
            raise ValueError("exclude_gold=True only applies to the §2.1 mixture: also set alpha")
        self.exclude_gold = exclude_gold
        self.class_prior_correction = class_prior_correction
        self.prior_gamma = check_range("prior_gamma", prior_gamma, low=0.0)
        if keyword_source == "given":
            if not keywords:
                raise ValueError("keyword_source='given' needs keywords={label: {word: weight}}")
            for lab, kw in keywords.items():
                for w, v in kw.items():
                    check_range(f"keyword weight of {w!r} for label {lab!r}", v, low=0.0)
        self.keywords = keywords
        self.label_names = label_names
        self.seed_words = seed_words
        self._user_tokenizer = tokenizer
        self.tokenize = resolve_tokenizer(tokenizer, lowercase=lowercase)
        self.stopwords = _stopwords(stopwords)
        self.allow_fallback = allow_fallback
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> KeywordLabelSmoother:
        """Learn label keywords and corpus statistics from the training split ``(texts, labels)``."""
        texts = _as_texts(texts)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
        check_script(texts, self._user_tokenizer)
        y = self._fit_labels(labels, min_per_class=2)
        self.counter_ = TermCounter(self.tokenize, self.stopwords)
        X = self.counter_.fit_transform(texts)  # [N, V] f_x(w)
        self.fit_hash_ = _hash_texts(texts)
        n, L = X.shape[0], len(self.classes_)
        self.n_train_ = n
        Y = sp.csr_matrix((np.ones(n), (np.arange(n), y)), shape=(n, L))
        F = (Y.T @ X).tocsr()  # [L, V] f_i(w): count of w over all texts of label i
        self.df_ = np.asarray((X > 0).sum(axis=0)).ravel()  # df(w) over instances
        self.avg_token_len_ = float(X.sum() / n)  # mean instance length (tokens)
        self.prior_ = self.class_counts_ / self.class_counts_.sum()
        if self.keyword_source == "reference":
            self._fit_reference(F)
        else:
            self._fit_keywords(X, y, F)
        self.keywords_ = self._keyword_dict()
        return self

    def _fit_reference(self, F: sp.csr_matrix) -> None:
        L = F.shape[0]
        len_i = np.asarray(F.sum(axis=1)).ravel()  # total tokens of label i
        avglen = len_i.mean()
        K = self.k1 * (1.0 - self.b + self.b * len_i / avglen)  # K_i
        wlc = saturate(F, K, numerator=self.k1)  # f_i(w)·k1 / (f_i(w) + K_i)
        L_w = np.asarray((F > 0).sum(axis=0)).ravel()  # labels whose texts contain w
        wlw = idf_reference(L, L_w)  # ln(L / L_w) + 1
        self.label_word_ = (wlc @ sp.diags(wlw)).tocsr()  # wlr_i(w)  [L, V]
        self.iwiw_ = idf_reference(self.n_train_, self.df_)  # wiw(w) = ln(N/df) + 1

    def _fit_keywords(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> None:
        L, V = F.shape
        vocab = self.counter_.vocabulary_
        if self.keyword_source == "given":
            unknown = sorted(set(self.keywords) - set(self.classes_), key=str)
            if unknown:
                raise UnknownLabelError(
                    f"keywords given for labels {unknown} that are not in the training labels {self.classes_}"
                )
            rows = [
                self._weights_from_dict(self.keywords.get(c, {}), vocab, V) for c in self.classes_
            ]
        elif self.keyword_source == "label_names":
            rows = [self._name_keywords(c, vocab, V) for c in self.classes_]
        else:
            if self.keyword_source == "ctfidf":
                score = self._ctfidf(F)
            else:
                score = self._chi2(X, y)
            df_ok = self.df_ >= 2  # exclude terms with df < 2
            if self.stopwords:
                df_ok &= ~np.isin(self.counter_.terms_, list(self.stopwords))
            rows = []
            for i in range(L):  # per class (L iterations), not per word
                s = np.where(df_ok, score[i], 0.0)
                top = np.argsort(-s, kind="stable")[: self.top_k]
                top = top[s[top] > 0]
                w = np.zeros(V)
                w[top] = s[top]
                rows.append(w)
        Om = np.vstack(rows)
        empty = [self.classes_[i] for i in np.flatnonzero(Om.sum(axis=1) <= 0)]
        if empty and self.allow_fallback and self.keyword_source != "label_names":
            for c in empty:
                Om[self._index[c]] = self._name_keywords(c, vocab, V)
            empty = [self.classes_[i] for i in np.flatnonzero(Om.sum(axis=1) <= 0)]
        if empty:
            raise TooFewExamplesError(
                f"no extractable keyword for class(es) {empty} (keyword_source={self.keyword_source!r}); "
                "pass allow_fallback=True to use the label names"
            )
        Om /= Om.sum(axis=1, keepdims=True)  # Σ_w ω_{c,w} = 1
        self.omega_ = sp.csr_matrix(Om)  # [L, V]
        # corpus statistics of the instance scoring (training split only)
        n = X.shape[0]
        self.bm25_idf_ = np.log1p((n - self.df_ + 0.5) / (self.df_ + 0.5))
        self.avgdl_ = self.avg_token_len_ or 1.0
        if self.relevance_kind == "tfidf_cosine":
            self.tfidf_idf_ = np.log((1.0 + n) / (1.0 + self.df_)) + 1.0

    def _ctfidf(self, F: sp.csr_matrix) -> np.ndarray:
        """Class-based TF-IDF: ``tf(w,c) · log(1 + A / tf(w, all classes))``, A = mean tokens per class."""
        Fd = F.toarray()
        tf_all = Fd.sum(axis=0)
        A = Fd.sum() / Fd.shape[0]
        with np.errstate(divide="ignore"):
            idf = np.where(tf_all > 0, np.log1p(A / np.maximum(tf_all, 1e-12)), 0.0)
        return Fd * idf

    def _chi2(self, X: sp.csr_matrix, y: np.ndarray) -> np.ndarray:
        """χ² of each term vs class c (one-vs-rest), kept only where the term is over-represented in c."""
        from sklearn.feature_selection import chi2

        L = len(self.classes_)
        Xb = (X > 0).astype(np.float64)
        rate_all = np.asarray(Xb.mean(axis=0)).ravel()
        out = np.zeros((L, X.shape[1]))
        for i in range(L):
            stat, _ = chi2(X, (y == i).astype(int))
            rate_c = np.asarray(Xb[y == i].mean(axis=0)).ravel()
            out[i] = np.where(rate_c > rate_all, np.nan_to_num(stat), 0.0)
        return out

    def _weights_from_dict(self, kw: Mapping[str, float], vocab: dict, V: int) -> np.ndarray:
        w = np.zeros(V)
        for word, v in kw.items():
            j = vocab.get(word)
            if j is not None:
                w[j] += float(v)
        return w

    def _name_keywords(self, c: Any, vocab: dict, V: int) -> np.ndarray:
        name = (self.label_names or {}).get(c, str(c))
        words = list(self.tokenize(str(name))) + list((self.seed_words or {}).get(c, ()))
        return self._weights_from_dict(dict.fromkeys(words, 1.0), vocab, V)

    def _keyword_dict(self) -> dict[Any, dict[str, float]]:
        M = self.label_word_ if self.keyword_source == "reference" else self.omega_
        terms = self.counter_.terms_
        out: dict[Any, dict[str, float]] = {}
        for i, c in enumerate(self.classes_):
            row = M.getrow(i)
            order = np.argsort(-row.data, kind="stable")[: self.top_k]
            out[c] = {str(terms[row.indices[j]]): float(row.data[j]) for j in order}
        return out

    # ------------------------------------------------------------ transform
    def relevance(self, texts: Sequence[str]) -> np.ndarray:
        """Raw relevance ``[n, C]``: the reference score s_i(x), or r(x, c) of the §2.2 variants."""
        if not hasattr(self, "counter_"):
            raise NotFittedError("KeywordLabelSmoother: call fit(texts, labels) first")
        texts = _as_texts(texts, allow_empty=True)
        check_script(texts, self._user_tokenizer)
        X = self.counter_.transform(texts)  # unseen words dropped (df = 0: skipped)
        if self.keyword_source == "reference":
            wir = saturate(X, self.k2, numerator=self.k2) @ sp.diags(self.iwiw_)  # wiw·wic
            return np.asarray((wir @ self.label_word_.T).todense())  # s_i(x)
        if self.relevance_kind == "bm25":
            dl = np.asarray(X.sum(axis=1)).ravel()
            K = self.bm25_k1 * (1.0 - self.bm25_b + self.bm25_b * dl / self.avgdl_)
            B = saturate(X, K, numerator=self.bm25_k1 + 1.0) @ sp.diags(self.bm25_idf_)
            return np.asarray((B @ self.omega_.T).todense())  # Σ_w ω_{c,w}·bm25(w, x)
        T = X.copy()
        T.data = 1.0 + np.log(T.data)
        T = T @ sp.diags(self.tfidf_idf_)
        K = self.omega_ @ sp.diags(self.tfidf_idf_)
        num = np.asarray((T @ K.T).todense())
        tn = np.sqrt(np.asarray(T.multiply(T).sum(axis=1)).ravel())
        kn = np.sqrt(np.asarray(K.multiply(K).sum(axis=1)).ravel())
        return num / np.maximum(np.outer(tn, kn), 1e-12)

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """The relevance distribution q(x) ``[n, C]`` (before any mixing with the hard label)."""
        S = self.relevance(texts)
        n, L = S.shape
        if self.keyword_source == "reference":
            tau = self.tau if self.tau is not None else self.avg_token_len_
            q = softmax_rows(S, tau)  # softmax(s / avg_token_len)
            zero = ~S.any(axis=1)
        else:
            tau = self.tau if self.tau is not None else 0.5
            r_tilde = S / (S.max(axis=1, keepdims=True) + 1e-9)
            q = softmax_rows(r_tilde, tau)
            zero = ~S.any(axis=1)
            q[zero] = 1.0 / L  # classic-LS fallback
        if self.class_prior_correction:
            q = q / self.prior_**self.prior_gamma
            q /= q.sum(axis=1, keepdims=True)
        self.stats_ = {"n": int(n), "uniform_rows": int(zero.sum())}
        if zero.any():
            logger.warning(
                "%d of %d texts have no known keyword: their keyword distribution is uniform (classic LS)",
                int(zero.sum()),
                n,
            )
        return q

    def transform(self, texts: Sequence[str], labels: Sequence[Any] | None = None) -> np.ndarray:
        """Soft labels ``[n, C]`` (rows sum to 1): q(x), or ``(1 − α)·y + α·q`` when ``alpha`` is set."""
        texts = _as_texts(texts, allow_empty=True)
        if self.alpha is not None and labels is None:
            raise ValueError("alpha is set: transform needs the hard labels to mix with")
        if labels is not None and len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
        y = self.label_index(labels) if labels is not None else None
        q = self.distribution(texts)
        if self.alpha is None:
            return q
        if self.exclude_gold:
            q = q.copy()
            q[np.arange(len(y)), y] = 0.0
            s = q.sum(axis=1, keepdims=True)
            q = np.divide(q, s, out=np.full_like(q, 0.0), where=s > 0)
        return mix(one_hot(y, len(self.classes_)), q, self.alpha)

    def fit_transform(self, texts: Sequence[str], labels: Sequence[Any]) -> np.ndarray:
        return self.fit(texts, labels).transform(texts, labels)

    def warn_if_fit_texts(self, texts: Sequence[str], what: str = "evaluation") -> bool:
        """Warn (and return True) when ``texts`` are exactly the texts ``fit`` saw.

        Keywords fitted on evaluation data cannot be detected in general; evaluation helpers call this
        to catch the plain case of fitting on the very split being evaluated.
        """
        same = getattr(self, "fit_hash_", None) == _hash_texts(list(texts))
        if same:
            logger.warning(
                "the %s texts are the texts KLS was fitted on: keywords leak the labels", what
            )
        return same


class UniformLabelSmoother(_LabelEncoding):
    """Classic label smoothing (Szegedy et al. 2016) as a soft-label column: ``(1 − ε)·y + ε/C``.

    The baseline in the same shape as :class:`KeywordLabelSmoother`; equals KLS's mixture with a
    uniform q, and training on it with :func:`kls.losses.soft_cross_entropy` equals
    ``torch.nn.functional.cross_entropy(..., label_smoothing=ε)``.
    """

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = check_range("epsilon", epsilon, low=0.0, high=1.0, high_open=True)

    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> UniformLabelSmoother:
        texts = _as_texts(texts)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
        self._fit_labels(labels, min_per_class=1)
        return self

    def transform(self, texts: Sequence[str], labels: Sequence[Any]) -> np.ndarray:
        y = self.label_index(labels)
        L = len(self.classes_)
        return mix(one_hot(y, L), np.full((len(y), L), 1.0 / L), self.epsilon)

    def fit_transform(self, texts: Sequence[str], labels: Sequence[Any]) -> np.ndarray:
        return self.fit(texts, labels).transform(texts, labels)


def _as_texts(texts: Sequence[str], allow_empty: bool = False) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    if not texts and not allow_empty:
        raise EmptyInputError("no texts given (an empty sequence)")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts


def _hash_texts(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x00")
    return h.hexdigest()
