"""The keyword label smoother shared by every keyword source: fit pipeline, q(x), §2.1 mixing.

``KeywordLabelSmoother(keyword_source=...)`` builds the variant class of that source (one file per
variant: :mod:`kls.smoothers.reference`, :mod:`~kls.smoothers.ctfidf`, :mod:`~kls.smoothers.chi2`,
:mod:`~kls.smoothers.label_names`, :mod:`~kls.smoothers.given`), which is a subclass, so
``isinstance(x, KeywordLabelSmoother)`` holds for all of them. A variant implements only
``_fit_source(X, y, F)`` (its label–word statistics), ``relevance(texts)`` and ``_q(S)``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from kls._math import mix, one_hot
from kls.errors import ConfigError, NotFittedError
from kls.smoothers.base import LabelSmoother, as_texts, import_class
from kls.smoothers.config import SOURCES, KLSConfig
from kls.tokenize import check_script, resolve_tokenizer
from kls.weighting import TermCounter, _stopwords

logger = logging.getLogger(__name__)

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(KLSConfig)}


class KeywordLabelSmoother(LabelSmoother):
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
        tokenizer: ``None`` / ``"whitespace"`` (as the reference), ``"char"`` (one token per CJK
            character), a transformers tokenizer name/path or object, or a callable.
        lowercase: lower-case text before tokenising (the reference does not).
        stopwords: ``None`` (reference default), ``"en"`` or a set of words to drop.
        allow_fallback: when a class has no extractable keyword, fall back to its label name.
        config: a :class:`KLSConfig` instead of the keyword arguments above.

    Classes with a single training text are accepted (long-tailed label sets): the same formulas
    apply, with that text as the class's whole "document".
    """

    #: the keyword source a subclass implements (set by each variant)
    source: str = "reference"

    def __new__(cls, keyword_source: str | None = None, *args: Any, **kwargs: Any):
        if cls is KeywordLabelSmoother:
            config = kwargs.get("config")
            src = keyword_source or (config.keyword_source if config is not None else "reference")
            if src not in SOURCES:
                raise ValueError(f"keyword_source must be one of {tuple(SOURCES)}, got {src!r}")
            cls = import_class(SOURCES[src])
        return super().__new__(cls)

    def __init__(
        self,
        keyword_source: str | None = None,
        relevance: str | None = None,
        alpha: float | None = None,
        tau: float | None = None,
        *,
        config: KLSConfig | None = None,
        tokenizer: Any = None,
        **kwargs: Any,
    ):
        if keyword_source is not None and keyword_source != self.source:
            raise ValueError(
                f"{type(self).__name__} implements keyword_source={self.source!r}, got {keyword_source!r}"
            )
        unknown = sorted(set(kwargs) - _CONFIG_FIELDS)
        if unknown:
            raise TypeError(f"unknown argument(s) {unknown}; known: {sorted(_CONFIG_FIELDS)}")
        if config is None:
            name = tokenizer if isinstance(tokenizer, str) else None
            config = KLSConfig(
                keyword_source=self.source,
                relevance=relevance,
                alpha=alpha,
                tau=tau,
                tokenizer=name,
                **kwargs,
            )
        elif relevance is not None or alpha is not None or tau is not None or kwargs:
            raise TypeError("pass either config= or keyword arguments, not both")
        if config.keyword_source != self.source:
            raise ValueError(
                f"config.keyword_source={config.keyword_source!r} does not match {type(self).__name__}"
            )
        self.config = config
        self._user_tokenizer = tokenizer if tokenizer is not None else config.tokenizer
        self.tokenize = resolve_tokenizer(self._user_tokenizer, lowercase=config.lowercase)
        self.stopwords = _stopwords(config.stopwords)

    def __getattr__(self, name: str) -> Any:  # config fields read as attributes (sm.alpha, sm.tau)
        if name in _CONFIG_FIELDS and "config" in self.__dict__:
            return getattr(self.__dict__["config"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def keyword_source(self) -> str:
        return self.source

    @property
    def relevance_kind(self) -> str:
        return self.config.relevance

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self.config, f.name)!r}"
            for f in dataclasses.fields(KLSConfig)
            if getattr(self.config, f.name) != f.default and f.name != "keyword_source"
        )
        return f"{type(self).__name__}({fields})"

    # ------------------------------------------------------------------ fit
    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> KeywordLabelSmoother:
        """Learn label keywords and corpus statistics from the training split ``(texts, labels)``."""
        texts = as_texts(texts)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
        check_script(texts, self._user_tokenizer)
        y = self._fit_labels(labels)
        self.counter_ = TermCounter(self.tokenize, self.stopwords)
        X = self.counter_.fit_transform(texts)  # [N, V] f_x(w)
        self._remember_fit_texts(texts)
        n, L = X.shape[0], len(self.classes_)
        self.n_train_ = n
        Y = sp.csr_matrix((np.ones(n), (np.arange(n), y)), shape=(n, L))
        F = (Y.T @ X).tocsr()  # [L, V] f_i(w): count of w over all texts of label i
        self.df_ = np.asarray((X > 0).sum(axis=0)).ravel()  # df(w) over instances
        self.avg_token_len_ = float(X.sum() / n)  # mean instance length (tokens)
        self.prior_ = self.class_counts_ / self.class_counts_.sum()
        self._fit_source(X, y, F)
        self.keywords_ = self._keyword_dict()
        return self

    def _fit_source(self, X: sp.csr_matrix, y: np.ndarray, F: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _keyword_matrix(self) -> sp.csr_matrix:
        """``[L, V]`` label–word weights listed by :attr:`keywords_`."""
        raise NotImplementedError

    def _keyword_dict(self) -> dict[Any, dict[str, float]]:
        M = self._keyword_matrix()
        terms = self.counter_.terms_
        out: dict[Any, dict[str, float]] = {}
        for i, c in enumerate(self.classes_):
            row = M.getrow(i)
            order = np.argsort(-row.data, kind="stable")[: self.config.top_k]
            out[c] = {str(terms[row.indices[j]]): float(row.data[j]) for j in order}
        return out

    # ------------------------------------------------------------ transform
    def _counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        if not hasattr(self, "counter_"):
            raise NotFittedError(f"{type(self).__name__}: call fit(texts, labels) first")
        texts = as_texts(texts, allow_empty=True)
        check_script(texts, self._user_tokenizer)
        return self.counter_.transform(texts)  # unseen words dropped (df = 0: skipped)

    def relevance(self, texts: Sequence[str]) -> np.ndarray:
        """Raw relevance ``[n, C]``: the reference score s_i(x), or r(x, c) of the §2.2 variants."""
        raise NotImplementedError

    def _q(self, S: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def distribution(self, texts: Sequence[str]) -> np.ndarray:
        """The relevance distribution q(x) ``[n, C]`` (before any mixing with the hard label)."""
        S = self.relevance(texts)
        n = S.shape[0]
        q = self._q(S)
        zero = ~S.any(axis=1)
        if self.config.class_prior_correction:
            q = q / self.prior_**self.config.prior_gamma
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
        texts = as_texts(texts, allow_empty=True)
        alpha = self.config.alpha
        if alpha is not None and labels is None:
            raise ValueError("alpha is set: transform needs the hard labels to mix with")
        if labels is not None and len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
        y = self.label_index(labels) if labels is not None else None
        q = self.distribution(texts)
        if alpha is None:
            return q
        if self.config.exclude_gold:
            q = q.copy()
            q[np.arange(len(y)), y] = 0.0
            s = q.sum(axis=1, keepdims=True)
            q = np.divide(q, s, out=np.full_like(q, 0.0), where=s > 0)
        return mix(one_hot(y, len(self.classes_)), q, alpha)

    # ---------------------------------------------------------------- save / load
    def _config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def _save_tokenizer(self, path: Path) -> dict[str, Any]:
        tok = self._user_tokenizer
        if tok is None or isinstance(tok, str):
            return {"kind": "name", "name": tok}
        if hasattr(tok, "save_pretrained"):
            tok.save_pretrained(str(path / "tokenizer"))
            return {"kind": "saved", "dir": "tokenizer"}
        return {"kind": "callable", "repr": repr(tok)[:200]}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = super()._state()
        meta.update(
            {
                "terms": [str(t) for t in self.counter_.terms_],
                "n_train": int(self.n_train_),
                "avg_token_len": float(self.avg_token_len_),
            }
        )
        arrays.update({"df": self.df_, "prior": self.prior_})
        return meta, arrays

    def _load_state(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        super()._load_state(meta, arrays)
        self.counter_ = TermCounter.from_terms(self.tokenize, meta["terms"], self.stopwords)
        self.n_train_ = int(meta["n_train"])
        self.avg_token_len_ = float(meta["avg_token_len"])
        self.df_ = arrays["df"]
        self.prior_ = arrays["prior"]

    @classmethod
    def _from_saved(cls, doc: Mapping[str, Any], path: Path, **kwargs: Any) -> KeywordLabelSmoother:
        config = KLSConfig.from_dict(doc["config"])
        tok_doc = doc.get("tokenizer") or {"kind": "name", "name": None}
        tokenizer = kwargs.pop("tokenizer", None)
        if kwargs:
            raise TypeError(f"from_pretrained takes only tokenizer=, got {sorted(kwargs)}")
        if tokenizer is None:
            if tok_doc["kind"] == "saved":
                from papercore.models import load_tokenizer

                tokenizer = load_tokenizer(str(path / tok_doc["dir"]))
            elif tok_doc["kind"] == "callable":
                raise ConfigError(
                    f"{path} was fitted with a custom tokenizer callable ({tok_doc.get('repr')}), "
                    "which cannot be saved: pass the same one as from_pretrained(path, tokenizer=...)"
                )
        obj = cls(config=config, tokenizer=tokenizer)
        obj.keywords_ = {}
        return obj

    @classmethod
    def from_pretrained(cls, path: Any, **kwargs: Any) -> KeywordLabelSmoother:
        obj = super().from_pretrained(path, **kwargs)
        obj.keywords_ = obj._keyword_dict()
        return obj


__all__ = ["KeywordLabelSmoother"]
