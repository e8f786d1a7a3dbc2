"""Quadruplet mining: (query, positive, hard negative, simple negative) from queries, corpus and qrels.

Spec: hard negative = highly ranked by BM25 (or the current model) but not relevant; simple negative
= a random non-relevant document outside the BM25 top-K_h. [paper: four towers q/p/h/s]

Two miners:

* ``miner="bm25"`` (the paper's; sentence-transformers has none): papercore's bm25s BM25, below.
* ``miner=<SentenceTransformer>``: sentence-transformers' own ``util.mine_hard_negatives`` picks the
  hard negatives (``range_min = skip_top``, ``range_max = hard_k``, ``absolute_margin`` /
  ``relative_margin`` / ``max_score`` as false-negative filters, an optional ``cross_encoder`` that
  rescores the candidates, the model's query / document prompts, faiss with ``use_faiss``), and
  quadbert adds the simple negative: a uniform document that is not a positive, not a copy of one
  and not among the query's mined negatives.

``n_hard`` hard negatives per row give the columns ``anchor, positive, hard_negative_1 … _N,
simple_negative`` (``n_hard=1``: ``hard_negative``), which :class:`~quadbert.losses.QuadrupletLoss`
takes as they come.

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


def hard_columns(n_hard: int) -> tuple[str, ...]:
    """Hard-negative column names: ``("hard_negative",)`` for 1, else ``hard_negative_1 … _N``."""
    return (
        ("hard_negative",)
        if n_hard == 1
        else tuple(f"hard_negative_{i + 1}" for i in range(n_hard))
    )


def text_columns(n_hard: int = 1) -> tuple[str, ...]:
    """The loss's columns in order: anchor, positive, the hard negatives, simple_negative."""
    return ("anchor", "positive", *hard_columns(n_hard), "simple_negative")


def id_columns(n_hard: int = 1) -> tuple[str, ...]:
    """The id columns that go with :func:`text_columns`."""
    return (
        "query_id",
        "positive_id",
        *(f"{c}_id" for c in hard_columns(n_hard)),
        "simple_negative_id",
    )


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
    n_hard: int = 1,
    return_ids: bool = False,
    batch_size: int = 64,
    show_progress: bool = False,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    max_score: float | None = None,
    cross_encoder: Any = None,
    sampling_strategy: Literal["random", "top"] = "random",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    document_prompt_name: str | None = None,
    document_prompt: str | None = None,
    use_faiss: bool = False,
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
            or a SentenceTransformer, whose negatives come from
            ``sentence_transformers.util.mine_hard_negatives`` (module docstring).
        skip_top: best-ranked non-positive candidates left out of the hard negatives (and of the
            simple ones). ``None`` (default): 10 when ``miner`` is a model, 0 for ``"bm25"``.
        seed: sampling seed; the same inputs and seed give the same dataset.
        n_hard: hard negatives per row (columns ``hard_negative_1 … _N`` when > 1).
        return_ids: also return query_id, positive_id, hard_negative_id, simple_negative_id columns.
        absolute_margin, relative_margin, max_score, cross_encoder, sampling_strategy, use_faiss:
            model miner only, passed to ``sentence_transformers.util.mine_hard_negatives``: a
            candidate is dropped when its score is within ``absolute_margin`` of (or above
            ``1 − relative_margin`` times) the positive's, or above ``max_score`` (likely
            unlabelled positives); the cross-encoder, when given, rescores the candidates.
        query_prompt_name, query_prompt, document_prompt_name, document_prompt: model miner
            only: prompts for queries / documents (default: the model's own "query" /
            "document" prompts, as ``encode_query`` / ``encode_document`` apply them).

    Raises:
        MiningError (a ValueError): empty or blank texts (ids listed), bad sizes, every query
        skipped, or a query with no possible simple negative.
    """

    queries, corpus = dict(queries), dict(corpus)
    _check_texts("corpus", corpus)
    _check_texts("queries", queries)
    if skip_top is None:
        skip_top = 0 if isinstance(miner, str) else MODEL_MINER_SKIP_TOP
    for name, value, low in (
        ("hard_k", hard_k, 1),
        ("n_per_query", n_per_query, 1),
        ("skip_top", skip_top, 0),
        ("n_hard", n_hard, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise MiningError(f"{name} must be an integer >= {low}, got {value!r}")
    if isinstance(miner, str) and miner != "bm25":
        raise MiningError(f"miner must be 'bm25' or a SentenceTransformer, got {miner!r}")
    if not isinstance(miner, str) and not hasattr(miner, "encode"):
        raise MiningError(
            f"miner must be 'bm25' or a SentenceTransformer, got {type(miner).__name__}"
        )
    if isinstance(miner, str):
        st_only = dict(
            absolute_margin=absolute_margin,
            relative_margin=relative_margin,
            max_score=max_score,
            cross_encoder=cross_encoder,
            query_prompt_name=query_prompt_name,
            query_prompt=query_prompt,
            document_prompt_name=document_prompt_name,
            document_prompt=document_prompt,
        )
        given = [k for k, v in st_only.items() if v is not None] + (
            ["use_faiss"] if use_faiss else []
        )
        if given:
            raise MiningError(f"{given} apply to a model miner only, got miner='bm25'")
    if sampling_strategy not in ("random", "top"):
        raise MiningError(f"sampling_strategy must be 'random' or 'top', got {sampling_strategy!r}")
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

    if not isinstance(miner, str):
        mined = _mine_with_sentence_transformers(
            usable,
            corpus,
            positives,
            miner,
            hard_k=hard_k,
            skip_top=skip_top,
            n_negatives=n_per_query * n_hard,
            seed=seed,
            batch_size=batch_size,
            show_progress=show_progress,
            absolute_margin=absolute_margin,
            relative_margin=relative_margin,
            max_score=max_score,
            cross_encoder=cross_encoder,
            sampling_strategy=sampling_strategy,
            query_prompt_name=query_prompt_name,
            query_prompt=query_prompt,
            document_prompt_name=document_prompt_name,
            document_prompt=document_prompt,
            use_faiss=use_faiss,
        )
        return _assemble_mined(
            usable, corpus, positives, mined, n_per_query, n_hard, seed, return_ids, hard_k
        )

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
            hs = []
            for i in range(n_hard):
                k = j * n_hard + i
                hs.append(hard_order[k] if k < len(hard_order) else rng.choice(hard))
            s, dropped = _simple_negative(qid, rng, doc_ids, corpus, forbidden, pos_texts, hard_k)
            n_simple_text_dropped += dropped
            rows.append(_row(text, qid, p, hs, s, corpus))

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
    return _dataset(rows, n_hard, return_ids)


def _row(text: str, qid: str, p: str, hs: list[str], s: str, corpus: dict[str, str]) -> dict:
    """One row with every text and id column (:func:`_dataset` keeps the ones asked for)."""
    cols = hard_columns(len(hs))
    row = {"anchor": text, "positive": corpus[p], "simple_negative": corpus[s]}
    row.update({c: corpus[h] for c, h in zip(cols, hs, strict=True)})
    row.update(query_id=qid, positive_id=p, simple_negative_id=s)
    row.update({f"{c}_id": h for c, h in zip(cols, hs, strict=True)})
    return row


def _dataset(rows: list[dict], n_hard: int, return_ids: bool):
    import datasets

    columns = text_columns(n_hard) + (id_columns(n_hard) if return_ids else ())
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def _mine_with_sentence_transformers(
    queries: dict[str, str],
    corpus: dict[str, str],
    positives: dict[str, list[str]],
    model: Any,
    *,
    hard_k: int,
    skip_top: int,
    n_negatives: int,
    seed: int,
    batch_size: int,
    show_progress: bool,
    **options: Any,
) -> dict[str, list[str]]:
    """``{qid: [negative doc ids]}`` from ``sentence_transformers.util.mine_hard_negatives``.

    Every (query, positive) pair is one input row, so every positive of a query is excluded from
    its negatives; the negatives of the query's first row are used (``n_negatives`` of them, from
    ranks ``skip_top … hard_k`` after the positives are removed). Documents are compared by text
    (sentence-transformers deduplicates the corpus by text), so a copy of a positive is never a
    negative.
    """
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    if hard_k - skip_top < n_negatives:
        raise MiningError(
            f"the model miner draws n_per_query × n_hard = {n_negatives} negatives per query from "
            f"ranks {skip_top}..{hard_k} (skip_top..hard_k): raise hard_k or lower skip_top, "
            "n_per_query or n_hard"
        )
    pairs = [(q, corpus[d]) for q in queries for d in positives[q] if d in corpus]
    text_to_id: dict[str, str] = {}
    for did, text in corpus.items():
        text_to_id.setdefault(text, did)
    query_of_text: dict[str, str] = {}
    for q, t in queries.items():
        query_of_text.setdefault(t, q)
    pair_ds = datasets.Dataset.from_dict(
        {"anchor": [queries[q] for q, _ in pairs], "positive": [p for _, p in pairs]}
    )
    # sampling_strategy="random" draws with the global `random` module: seed it for this call only
    state = random.getstate()
    random.seed(seed)
    try:
        out = mine_hard_negatives(
            pair_ds,
            model,
            corpus=list(corpus.values()),
            cross_encoder=options["cross_encoder"],
            range_min=skip_top,
            range_max=hard_k,
            max_score=options["max_score"],
            absolute_margin=options["absolute_margin"],
            relative_margin=options["relative_margin"],
            num_negatives=n_negatives,
            sampling_strategy=options["sampling_strategy"],
            query_prompt_name=options["query_prompt_name"],
            query_prompt=options["query_prompt"],
            corpus_prompt_name=options["document_prompt_name"],
            corpus_prompt=options["document_prompt"],
            output_format="n-tuple",
            batch_size=batch_size,
            use_faiss=options["use_faiss"],
            verbose=show_progress,
        )
    finally:
        random.setstate(state)
    mined: dict[str, list[str]] = {}
    neg_cols = [c for c in out.column_names if c.startswith("negative")]
    for row in out:
        qid = query_of_text[row["anchor"]]
        if qid not in mined:
            mined[qid] = [text_to_id[row[c]] for c in neg_cols]
    return mined


def _assemble_mined(
    queries: dict[str, str],
    corpus: dict[str, str],
    positives: dict[str, list[str]],
    mined: dict[str, list[str]],
    n_per_query: int,
    n_hard: int,
    seed: int,
    return_ids: bool,
    hard_k: int,
):
    """Rows from model-mined negatives plus a simple negative per row."""
    rng = random.Random(seed)
    doc_ids = list(corpus)
    rows: list[dict[str, str]] = []
    skipped = [q for q in queries if q not in mined]
    for qid, text in queries.items():
        if qid not in mined:
            continue
        pos = [d for d in positives[qid] if d in corpus]
        pos_texts = {corpus[d] for d in pos}
        negs = mined[qid]
        forbidden = set(pos) | set(negs)
        rng.shuffle(pos)
        for j in range(n_per_query):
            hs = negs[j * n_hard : (j + 1) * n_hard]
            s, _ = _simple_negative(qid, rng, doc_ids, corpus, forbidden, pos_texts, hard_k)
            rows.append(_row(text, qid, pos[j % len(pos)], hs, s, corpus))
    if skipped:
        logger.warning(
            "skipping %d queries for which the model miner found fewer than %d negatives "
            "(margins, max_score or range); first: %s",
            len(skipped),
            n_per_query * n_hard,
            skipped[:5],
        )
    if not rows:
        raise MiningError(
            f"every query was skipped: the model miner found {n_per_query * n_hard} negatives for "
            f"none of the {len(queries)} queries; loosen the margins / max_score or raise hard_k"
        )
    return _dataset(rows, n_hard, return_ids)


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
    """BM25's top-``k`` document ids per query, best first."""
    from quadbert.bm25 import BM25Retriever

    # the pool holds only documents with a positive BM25 score (no arbitrary zero-score fill)
    retriever: Any = BM25Retriever(keep_zero_scores=False)
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
