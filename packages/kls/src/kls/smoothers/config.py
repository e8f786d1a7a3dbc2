"""The configuration of a keyword label smoother: one JSON-serialisable dataclass (``config.json``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kls._checks import check_range
from kls.errors import ConfigError, OutOfRangeError

KeywordSource = Literal["reference", "ctfidf", "chi2", "label_names", "given"]
Relevance = Literal["reference", "bm25", "tfidf_cosine"]

#: keyword sources and the module:class implementing each (one file per variant)
SOURCES: dict[str, str] = {
    "reference": "kls.smoothers.reference:ReferenceKeywordSmoother",
    "ctfidf": "kls.smoothers.ctfidf:CTFIDFKeywordSmoother",
    "chi2": "kls.smoothers.chi2:Chi2KeywordSmoother",
    "label_names": "kls.smoothers.label_names:LabelNameKeywordSmoother",
    "given": "kls.smoothers.given:GivenKeywordSmoother",
}


@dataclass
class KLSConfig:
    """Settings of :class:`~kls.KeywordLabelSmoother` (see its docstring for each field).

    ``tokenizer`` here is a *name*: ``None`` / ``"whitespace"`` (the reference), ``"char"`` (one token
    per CJK character, ``\\w+`` runs otherwise; no segmenter needed) or a transformers tokenizer name
    or directory. A tokenizer *object* is passed to the smoother itself, not stored here.
    """

    keyword_source: str = "reference"
    relevance: str | None = None
    alpha: float | None = None
    tau: float | None = None
    k1: float = 2.0
    b: float = 0.75
    k2: float = 2.0
    top_k: int = 50
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    exclude_gold: bool = False
    class_prior_correction: bool = False
    prior_gamma: float = 0.5
    keywords: Mapping[Any, Mapping[str, float]] | None = None
    label_names: Mapping[Any, str] | None = None
    seed_words: Mapping[Any, Sequence[str]] | None = None
    tokenizer: str | None = None
    lowercase: bool = False
    stopwords: str | frozenset[str] | None = None
    allow_fallback: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.keyword_source not in SOURCES:
            raise ValueError(
                f"keyword_source must be one of {tuple(SOURCES)}, got {self.keyword_source!r}"
            )
        if self.relevance is None:
            self.relevance = "reference" if self.keyword_source == "reference" else "bm25"
        if self.relevance not in ("reference", "bm25", "tfidf_cosine"):
            raise ValueError(
                f"relevance must be 'reference', 'bm25' or 'tfidf_cosine', got {self.relevance!r}"
            )
        if (self.relevance == "reference") != (self.keyword_source == "reference"):
            raise ValueError(
                "relevance='reference' goes with keyword_source='reference' only "
                f"(got keyword_source={self.keyword_source!r}, relevance={self.relevance!r})"
            )
        if self.alpha is not None:
            self.alpha = check_range("alpha", self.alpha, low=0.0, high=1.0, high_open=True)
        if self.tau is not None:
            self.tau = check_range("tau", self.tau, low=0.0, low_open=True)
        self.k1 = check_range("k1", self.k1, low=0.0, low_open=True)
        self.b = check_range("b", self.b, low=0.0, high=1.0)
        self.k2 = check_range("k2", self.k2, low=0.0, low_open=True)
        if isinstance(self.top_k, bool) or int(self.top_k) != self.top_k or self.top_k < 1:
            raise OutOfRangeError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        self.top_k = int(self.top_k)
        self.bm25_k1 = check_range("bm25_k1", self.bm25_k1, low=0.0)
        self.bm25_b = check_range("bm25_b", self.bm25_b, low=0.0, high=1.0)
        if self.exclude_gold and self.alpha is None:
            raise ValueError("exclude_gold=True only applies to the §2.1 mixture: also set alpha")
        self.prior_gamma = check_range("prior_gamma", self.prior_gamma, low=0.0)
        if self.keyword_source == "given":
            if not self.keywords:
                raise ValueError("keyword_source='given' needs keywords={label: {word: weight}}")
            for lab, kw in self.keywords.items():
                for w, v in kw.items():
                    check_range(f"keyword weight of {w!r} for label {lab!r}", v, low=0.0)
        if self.tokenizer is not None and not isinstance(self.tokenizer, str):
            raise TypeError(
                "KLSConfig.tokenizer is a name (None, 'whitespace', 'char' or a transformers "
                f"tokenizer name/path), got {type(self.tokenizer).__name__}; pass tokenizer objects "
                "to the smoother itself"
            )

    # ------------------------------------------------------------ JSON round trip
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; label-keyed mappings become ``[[label, value], ...]`` lists."""
        d = dataclasses.asdict(self)
        for key in ("keywords", "label_names", "seed_words"):
            m = getattr(self, key)
            d[key] = None if m is None else [[lab, _plain(v)] for lab, v in m.items()]
        if isinstance(self.stopwords, (set, frozenset)):
            d["stopwords"] = sorted(self.stopwords)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KLSConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown KLSConfig field(s) {unknown}; known: {sorted(names)}")
        d = dict(d)
        for key in ("keywords", "label_names", "seed_words"):
            if d.get(key) is not None:
                d[key] = {_label(lab): v for lab, v in d[key]}
        if isinstance(d.get("stopwords"), list):
            d["stopwords"] = frozenset(d["stopwords"])
        return cls(**d)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): float(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return list(v)
    return v


def _label(x: Any) -> Any:
    return tuple(x) if isinstance(x, list) else x


__all__ = ["SOURCES", "KLSConfig", "KeywordSource", "Relevance"]
