"""Quadruplet mining: (query, positive, hard negative, simple negative) from queries, corpus and qrels.

Spec: hard negative = highly ranked by BM25 (or the current model) but not relevant; simple negative
= a random non-relevant document outside the BM25 top-K_h. [paper: four towers q/p/h/s]

[inferred] For each training query the miner (BM25 by default, or a SentenceTransformer) ranks the
corpus; its top ``hard_k`` documents form the *hard pool*. Hard negatives are drawn from that pool
after dropping the query's positives (qrels relevance > 0) and any document whose text equals a
positive's text, then skipping the ``skip_top`` best-ranked remaining candidates (likely unlabelled
positives; sentence-transformers' ``range_min``): by default 10 with a model as miner (the spec's
``range_min=10``), 0 with BM25. Simple negatives are drawn uniformly from the rest
of the corpus: not a positive, not a copy of one, not in the hard pool. With BM25 the pool holds only
documents with a positive score.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any, Literal

from papercore.errors import MalformedInputError
from quadbert.errors import MiningError

logger = logging.getLogger(__name__)

QUAD_COLUMNS = ("anchor", "positive", "hard_negative", "simple_negative")
ID_COLUMNS = ("query_id", "positive_id", "hard_negative_id", "simple_negative_id")

_REJECTION_TRIES = 64
MODEL_MINER_SKIP_TOP = (
    10  # spec: range_min=10 when a model mines (its top ranks hold false negatives)
)


def build_quadruplets(
    queries: Mapping[str, str],
    corpus: Mapping[str, str],
    qrels: Mapping[str, Any],
    hard_k: int = 100,
    n_per_query: int = 1,
    miner: Literal["bm25"] | Any = "bm25",
    skip_top: int | None = None,
    seed: int = 0,
    *,
    return_ids: bool = False,
    batch_size: int = 64,
    show_progress: bool = False,
):
    """Build quadruplets as a ``datasets.Dataset`` with columns anchor, positive, hard_negative, simple_negative.

    Args:
        queries: ``{qid: text}``; only queries with a relevant document in ``corpus`` are used.
        corpus: ``{doc_id: text}``.
        qrels: ``{qid: {doc_id: relevance}}`` (relevance > 0 = positive) or ``{qid: set(doc_ids)}``.
        hard_k: size of the miner's top-k hard pool (capped, with a warning, to ``len(corpus) − 2``).
        n_per_query: quadruplets per query; positives are cycled, hard negatives drawn without
            replacement while the pool lasts.
        miner: ``"bm25"`` (:class:`~quadbert.bm25.BM25Retriever`: papercore's bm25s BM25, k1 = 1.5)
            or a SentenceTransformer whose exact (flat faiss) top-k is the pool.
        skip_top: best-ranked non-positive candidates left out of the hard negatives (and of the
            simple ones). ``None`` (default): 10 when ``miner`` is a model, 0 for ``"bm25"``.
        seed: sampling seed; the same inputs and seed give the same dataset.
        return_ids: also return query_id, positive_id, hard_negative_id, simple_negative_id columns.

    Raises:
        MiningError (a ValueError): empty or blank texts (ids listed), bad sizes, every query
        skipped, or a query with no possible simple negative.
    """
    import datasets

    queries, corpus = dict(queries), dict(corpus)
    _check_texts("corpus", corpus)
    _check_texts("queries", queries)
    if skip_top is None:
        skip_top = 0 if isinstance(miner, str) else MODEL_MINER_SKIP_TOP
    for name, value, low in (
        ("hard_k", hard_k, 1),
        ("n_per_query", n_per_query, 1),
        ("skip_top", skip_top, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise MiningError(f"{name} must be an integer >= {low}, got {value!r}")
    positives = _positives(qrels)

    usable = {q: t for q, t in queries.items() if any(d in corpus for d in positives.get(q, ()))}
    if len(usable) < len(queries):
        logger.warning(
            "skipping %d of %d queries with no relevant document in the corpus",
            len(queries) - len(usable),
            len(queries),
        )
    if not usable:
        raise MiningError(
            f"no query has a relevant document in the corpus ({len(queries)} queries, "
            f"{len(positives)} qids in qrels, {len(corpus)} documents): check that the qrels' "
            "query and document ids match the queries and corpus"
        )
    if len(corpus) < hard_k + 2:
        capped = max(1, len(corpus) - 2)
        logger.warning(
            "corpus has only %d documents, fewer than hard_k + 2 = %d: capping hard_k to %d",
            len(corpus),
            hard_k + 2,
            capped,
        )
        hard_k = capped

    ranking = _rank(
        usable, corpus, hard_k, miner, batch_size=batch_size, show_progress=show_progress
    )

    rng = random.Random(seed)
    doc_ids = list(corpus)
    rows: list[dict[str, str]] = []
    n_rel_dropped = n_text_dropped = n_simple_text_dropped = 0
    no_hard: list[str] = []
    for qid, text in usable.items():
        pos = [d for d in positives[qid] if d in corpus]
        pos_set = set(pos)
        pos_texts = {corpus[d] for d in pos}
        pool = ranking.get(qid, [])
        hard: list[str] = []
        for d in pool:
            if d in pos_set:
                n_rel_dropped += 1
            elif corpus[d] in pos_texts:
                n_text_dropped += 1
            else:
                hard.append(d)
        hard = hard[skip_top:]
        if not hard:
            no_hard.append(qid)
            continue
        forbidden = pos_set | set(pool)
        rng.shuffle(pos)
        hard_order = rng.sample(hard, len(hard))
        for j in range(n_per_query):
            p = pos[j % len(pos)]
            h = hard_order[j] if j < len(hard_order) else rng.choice(hard)
            s, dropped = _simple_negative(qid, rng, doc_ids, corpus, forbidden, pos_texts, hard_k)
            n_simple_text_dropped += dropped
            row = {
                "anchor": text,
                "positive": corpus[p],
                "hard_negative": corpus[h],
                "simple_negative": corpus[s],
            }
            if return_ids:
                row.update(query_id=qid, positive_id=p, hard_negative_id=h, simple_negative_id=s)
            rows.append(row)

    logger.info("dropped %d hard-negative candidates that are relevant in the qrels", n_rel_dropped)
    if n_text_dropped or n_simple_text_dropped:
        logger.warning(
            "dropped %d hard-negative and %d simple-negative candidates whose text equals a "
            "positive of the same query (duplicate documents under other ids)",
            n_text_dropped,
            n_simple_text_dropped,
        )
    if no_hard:
        logger.warning(
            "skipping %d queries with no hard-negative candidate in the miner's top-%d "
            "(after dropping positives and skip_top=%d); first: %s",
            len(no_hard),
            hard_k,
            skip_top,
            no_hard[:5],
        )
    if not rows:
        raise MiningError(
            f"every query was skipped: none of the {len(usable)} queries with a positive has a hard-"
            f"negative candidate in the miner's top-{hard_k} (skip_top={skip_top})"
        )
    columns = QUAD_COLUMNS + (ID_COLUMNS if return_ids else ())
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def _check_texts(name: str, texts: dict[str, str]) -> None:
    """Non-empty, and no empty or blank text (papercore's check, raising :class:`MiningError`)."""
    from papercore.retrieval import check_texts

    if not texts:
        raise MiningError(f"{name} is empty")
    try:
        check_texts(texts, name)
    except MalformedInputError as e:
        raise MiningError(str(e)) from None


def _positives(qrels: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{qid: [doc ids with relevance > 0]}`` from graded qrels or sets of ids, in a stable order."""
    from papercore.retrieval import as_qrels

    # sets iterate in hash order, which changes between processes: sort for reproducibility
    return {q: sorted(d for d, r in rel.items() if r > 0) for q, rel in as_qrels(qrels).items()}


def _rank(
    queries: dict[str, str],
    corpus: dict[str, str],
    k: int,
    miner: Any,
    *,
    batch_size: int,
    show_progress: bool,
) -> dict[str, list[str]]:
    """The miner's top-``k`` document ids per query, best first."""
    if isinstance(miner, str):
        if miner != "bm25":
            raise MiningError(f"miner must be 'bm25' or a SentenceTransformer, got {miner!r}")
        from quadbert.bm25 import BM25Retriever

        # the pool holds only documents with a positive BM25 score (no arbitrary zero-score fill)
        retriever: Any = BM25Retriever(keep_zero_scores=False)
    elif hasattr(miner, "encode"):
        from papercore.retrieval import FaissRetriever

        retriever = FaissRetriever(
            miner, "flat", batch_size=batch_size, show_progress=show_progress
        )
    else:
        raise MiningError(
            f"miner must be 'bm25' or a SentenceTransformer, got {type(miner).__name__}"
        )
    try:
        retriever.index(corpus)
    except MalformedInputError as e:  # e.g. no document has a term left after stop-word removal
        raise MiningError(str(e)) from None
    run = retriever.search(queries, k=k)
    return {q: sorted(docs, key=docs.__getitem__, reverse=True) for q, docs in run.items()}


def _simple_negative(
    qid: str,
    rng: random.Random,
    doc_ids: list[str],
    corpus: dict[str, str],
    forbidden: set[str],
    pos_texts: set[str],
    hard_k: int,
) -> tuple[str, int]:
    """A uniform corpus document outside ``forbidden`` and not a copy of a positive; (id, #text drops)."""
    dropped = 0
    for _ in range(_REJECTION_TRIES):  # cheap when the pool is a small part of the corpus
        d = doc_ids[rng.randrange(len(doc_ids))]
        if d in forbidden:
            continue
        if corpus[d] in pos_texts:
            dropped += 1
            continue
        return d, dropped
    allowed = [d for d in doc_ids if d not in forbidden and corpus[d] not in pos_texts]
    if not allowed:
        raise MiningError(
            f"no simple negative available for query {qid!r}: every corpus document is a positive, "
            f"a copy of one, or in the miner's top-{hard_k} pool; lower hard_k or add documents"
        )
    return rng.choice(allowed), dropped
