"""Synthetic data and data splits.

* :func:`make_synthetic_classification` — §4's classification miniature: classes with planted
  keywords, neighbouring classes sharing a fraction of them (a graded relevance structure),
  ambiguous texts, balanced or geometrically imbalanced training split, balanced test split.
* :func:`make_synthetic_retrieval` — re-exported from :mod:`papercore.retrieval` (shared generator).
* :func:`cold_start_split` — hold out whole groups of documents so that evaluation queries'
  relevant documents never appear in training (§2.4 [inferred]).
* :func:`make_training_groups` — (anchor, positive, negative_1..N) rows with BM25 hard negatives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from kls._checks import check_range
from kls.errors import EmptyInputError, InvalidGroupError, OutOfRangeError

logger = logging.getLogger(__name__)

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")


def _pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct pronounceable pseudo-words of 3 syllables (deterministic for a given rng)."""
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(3))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def make_synthetic_classification(
    n_classes: int = 6,
    n_per_class: int = 200,
    imbalance_ratio: float = 1.0,
    overlap: float = 0.3,
    seed: int = 0,
    *,
    n_keywords: int = 15,
    n_filler: int = 300,
    n_test_per_class: int = 100,
    ambiguous_fraction: float = 0.15,
    length: tuple[int, int] = (12, 30),
    keyword_rate: float = 0.25,
):
    """A ``DatasetDict(train, test)`` with columns ``text`` (str) and ``label`` (``ClassLabel``).

    Each class has ``n_keywords`` planted keywords (its first keyword is its name); class c shares
    ``overlap`` of its keywords with class c+1 (mod C). A text has 12–30 tokens: each token is one of
    its class's keywords with probability ``keyword_rate``, else a filler word. ``ambiguous_fraction``
    of texts draw keywords from the neighbour class too (40 % of keyword tokens), without label noise.
    ``imbalance_ratio`` r > 1 decays training-class sizes geometrically from ``n_per_class`` down to
    ``n_per_class / r``; the test split stays balanced.
    """
    import datasets

    if n_classes < 2:
        raise OutOfRangeError(f"n_classes must be >= 2, got {n_classes}")
    check_range("overlap", overlap, low=0.0, high=1.0, high_open=True)
    check_range("imbalance_ratio", imbalance_ratio, low=1.0)
    check_range("ambiguous_fraction", ambiguous_fraction, low=0.0, high=1.0)
    rng = np.random.default_rng(seed)
    n_shared = round(overlap * n_keywords)
    words = _pseudo_words(n_classes * n_keywords + n_filler, rng)
    own = [words[c * n_keywords : (c + 1) * n_keywords] for c in range(n_classes)]
    filler = words[n_classes * n_keywords :]
    # class c's keyword list: its own words, with the last n_shared borrowed from class c+1's own words
    kw = [
        own[c][: n_keywords - n_shared] + own[(c + 1) % n_classes][:n_shared]
        for c in range(n_classes)
    ]
    names = [k[0] for k in kw]

    def text(c: int) -> str:
        n = int(rng.integers(length[0], length[1] + 1))
        amb = rng.random() < ambiguous_fraction
        toks = []
        for _ in range(n):
            if rng.random() < keyword_rate:
                src = kw[(c + 1) % n_classes] if amb and rng.random() < 0.4 else kw[c]
                toks.append(src[int(rng.integers(len(src)))])
            else:
                toks.append(filler[int(rng.integers(len(filler)))])
        return " ".join(toks)

    if imbalance_ratio > 1:
        sizes = [
            max(2, round(n_per_class * imbalance_ratio ** (-c / (n_classes - 1))))
            for c in range(n_classes)
        ]
    else:
        sizes = [n_per_class] * n_classes

    def split(counts: Sequence[int]) -> dict[str, list[Any]]:
        labels = [c for c, k in enumerate(counts) for _ in range(k)]
        order = rng.permutation(len(labels))
        labels = [labels[i] for i in order]
        return {"text": [text(c) for c in labels], "label": labels}

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    train = datasets.Dataset.from_dict(split(sizes), features=features)
    test = datasets.Dataset.from_dict(split([n_test_per_class] * n_classes), features=features)
    dd = datasets.DatasetDict(train=train, test=test)
    return dd


def planted_keywords(
    n_classes: int = 6,
    overlap: float = 0.3,
    seed: int = 0,
    n_keywords: int = 15,
    n_filler: int = 300,
) -> list[list[str]]:
    """The keyword lists :func:`make_synthetic_classification` plants (same arguments, same seed)."""
    rng = np.random.default_rng(seed)
    n_shared = round(overlap * n_keywords)
    words = _pseudo_words(n_classes * n_keywords + n_filler, rng)
    own = [words[c * n_keywords : (c + 1) * n_keywords] for c in range(n_classes)]
    return [
        own[c][: n_keywords - n_shared] + own[(c + 1) % n_classes][:n_shared]
        for c in range(n_classes)
    ]


def make_synthetic_retrieval(**kwargs: Any):
    """The shared synthetic retrieval generator (:func:`papercore.retrieval.make_synthetic_retrieval`)."""
    from papercore.retrieval import make_synthetic_retrieval as make

    return make(**kwargs)


def cold_start_split(data: Any, frac: float = 0.2, by: str = "document", seed: int = 0):
    """Split a ``RetrievalData`` into ``(train, test)`` for the cold-start setting.

    ``by="document"``: documents are held out in whole connected groups (documents linked through
    shared queries in the qrels), until about ``frac`` of the judged documents are held out. Test
    queries are those whose relevant documents are held out; train queries never see a held-out
    document as a positive, and the train corpus excludes them (so they are not mined as negatives).
    The test corpus is the full corpus. ``by="query"``: a plain random query split.
    """
    from papercore.retrieval import RetrievalData, as_qrels

    check_range("frac", frac, low=0.0, high=1.0, low_open=True, high_open=True)
    qrels = as_qrels(data.qrels)
    qids = sorted(q for q in qrels if q in data.queries and any(v > 0 for v in qrels[q].values()))
    if not qids:
        raise EmptyInputError("cold_start_split: no query has a relevant document in the qrels")
    rng = np.random.default_rng(seed)
    if by == "query":
        order = [qids[i] for i in rng.permutation(len(qids))]
        n_test = max(1, round(frac * len(qids)))
        test_q, train_q = set(order[:n_test]), set(order[n_test:])
        return data.subset(sorted(train_q)), data.subset(sorted(test_q))
    if by != "document":
        raise ValueError(f"by must be 'document' or 'query', got {by!r}")
    # connected components of the query–document graph (union-find over documents)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for q in qids:
        docs = [d for d, v in qrels[q].items() if v > 0]
        for d in docs[1:]:
            parent[find(d)] = find(docs[0])
        find(docs[0])
    comps: dict[str, list[str]] = {}
    for d in parent:
        comps.setdefault(find(d), []).append(d)
    roots = sorted(comps)
    n_docs = sum(len(v) for v in comps.values())
    cold: set[str] = set()
    for i in rng.permutation(len(roots)):
        if len(cold) >= frac * n_docs:
            break
        cold.update(comps[roots[i]])
    test_q = [q for q in qids if any(d in cold for d, v in qrels[q].items() if v > 0)]
    train_q = [q for q in qids if q not in set(test_q)]
    if not train_q or not test_q:
        raise EmptyInputError(
            f"cold_start_split left an empty side (frac={frac}); use a larger corpus"
        )
    train_corpus = {d: t for d, t in data.corpus.items() if d not in cold}
    train = RetrievalData(
        corpus=train_corpus,
        queries={q: data.queries[q] for q in train_q},
        qrels={q: qrels[q] for q in train_q},
    )
    test = RetrievalData(
        corpus=dict(data.corpus),
        queries={q: data.queries[q] for q in test_q},
        qrels={q: qrels[q] for q in test_q},
    )
    return train, test


def make_training_groups(
    data: Any,
    n_negatives: int = 3,
    seed: int = 0,
    *,
    method: str = "bm25",
    k1: float = 1.2,
    positives_per_query: int | None = None,
    if_short: str = "error",
):
    """A ``datasets.Dataset`` of ``(anchor, positive, negative_1..negative_N)`` rows, one per
    (query, relevant document) pair (at most ``positives_per_query`` per query, chosen at random),
    with BM25 hard negatives (:class:`papercore.retrieval.BM25Index`, Lucene BM25 with ``k1``,
    b = 0.75, English stop words; relevant documents excluded) or random negatives
    (``method="random"``). A query with fewer than ``n_negatives`` non-relevant documents of
    positive BM25 score among its top ``n_negatives + 50`` is topped up with random ones (seeded).

    A query with fewer than ``n_negatives`` non-relevant documents in the whole corpus cannot fill
    its row; ``if_short`` says what happens then: ``"error"`` (default) raises
    :class:`~kls.errors.InvalidGroupError` naming the query, ``"skip"`` leaves its rows out (warning),
    ``"fewer"`` gives every row as many negatives as the shortest query has (warning; at least 1).
    """
    import datasets

    from papercore.retrieval import as_qrels

    if n_negatives < 1:
        raise OutOfRangeError(f"n_negatives must be >= 1, got {n_negatives}")
    if if_short not in ("error", "skip", "fewer"):
        raise ValueError(f"if_short must be 'error', 'skip' or 'fewer', got {if_short!r}")
    qrels = as_qrels(data.qrels)
    doc_ids = list(data.corpus)
    if len(doc_ids) < 2:
        raise EmptyInputError(
            f"corpus has {len(doc_ids)} documents; need a positive and a negative"
        )
    rng = np.random.default_rng(seed)
    pairs = [
        (q, d)
        for q in sorted(qrels)
        if q in data.queries
        for d, v in sorted(qrels[q].items())
        if v > 0 and d in data.corpus
    ]
    if not pairs:
        raise EmptyInputError("no (query, relevant document) pair with both texts present")
    if positives_per_query is not None:
        by_q: dict[str, list[tuple[str, str]]] = {}
        for p in pairs:
            by_q.setdefault(p[0], []).append(p)
        pairs = []
        for q in sorted(by_q):
            ps = by_q[q]
            pick = rng.permutation(len(ps))[:positives_per_query]
            pairs.extend(ps[i] for i in sorted(pick))
    if method not in ("bm25", "random"):
        raise ValueError(f"method must be 'bm25' or 'random', got {method!r}")
    corpus_ids = set(doc_ids)
    n_free = {
        q: len(corpus_ids - {x for x, v in qrels[q].items() if v > 0})
        for q in {q for q, _ in pairs}
    }
    short = {q: n for q, n in sorted(n_free.items()) if n < n_negatives}
    if short:
        listing = ", ".join(f"{q!r} ({n})" for q, n in list(short.items())[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        if if_short == "error":
            raise InvalidGroupError(
                f"{len(short)} quer{'y has' if len(short) == 1 else 'ies have'} fewer than "
                f"n_negatives={n_negatives} non-relevant documents in the corpus: {listing}{more}; "
                "lower n_negatives or pass if_short='skip' / 'fewer'"
            )
        if if_short == "skip":
            logger.warning("skipping queries with < %d negatives: %s%s", n_negatives, listing, more)
            pairs = [p for p in pairs if p[0] not in short]
            if not pairs:
                raise EmptyInputError("if_short='skip' left no (query, relevant document) pair")
        else:
            fewest = min(short.values())
            if fewest < 1:
                q0 = next(q for q, n in short.items() if n == fewest)
                raise InvalidGroupError(
                    f"query {q0!r} has no non-relevant document in the corpus: no negative possible"
                )
            logger.warning(
                "n_negatives lowered from %d to %d for every row (if_short='fewer'): %s%s",
                n_negatives,
                fewest,
                listing,
                more,
            )
            n_negatives = fewest
    ranked: dict[str, list[str]] = {}
    if method == "bm25":
        from papercore.retrieval import BM25Index

        # zero-score hits (no shared term) are not hard negatives: a short list is topped up
        # with seeded random negatives below
        retriever = BM25Index(k1=k1, b=0.75, keep_zero_scores=False)
        retriever.index(dict(data.corpus))
        qs = sorted({q for q, _ in pairs})
        run = retriever.search({q: data.queries[q] for q in qs}, k=n_negatives + 50)
        ranked = {q: list(run[q]) for q in qs}
    rows: dict[str, list[str]] = {"anchor": [], "positive": []}
    for j in range(n_negatives):
        rows[f"negative_{j + 1}"] = []
    for q, d in pairs:
        rel = {x for x, v in qrels[q].items() if v > 0}
        negs = [x for x in ranked.get(q, []) if x not in rel][:n_negatives]
        while len(negs) < n_negatives:
            x = doc_ids[int(rng.integers(len(doc_ids)))]
            if x not in rel and x not in negs:
                negs.append(x)
        rows["anchor"].append(data.queries[q])
        rows["positive"].append(data.corpus[d])
        for j, x in enumerate(negs):
            rows[f"negative_{j + 1}"].append(data.corpus[x])
    return datasets.Dataset.from_dict(rows)


__all__ = [
    "cold_start_split",
    "make_synthetic_classification",
    "make_synthetic_retrieval",
    "make_training_groups",
    "planted_keywords",
]
