"""IR metrics through ``ir_measures`` (MRR@k, R@k, nDCG@k, ... by name) and TREC run files."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from papercore.errors import BackendUnavailableError, MalformedInputError
from papercore.io import atomic_write
from papercore.retrieval.data import Qrels, Run, as_qrels

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: below this share of the qrels' queries present in the run, :func:`evaluate_run` warns
MIN_SHARED_QUERIES = 0.5

DEFAULT_METRICS = ("MRR@10", "R@10", "R@100", "nDCG@10")

# A document id that is never judged: queries missing from a run get this one document, so every
# evaluator scores them 0 instead of leaving them out of the mean.
_MISSING_DOC = "__papercore_no_result__"


def import_ir_measures() -> Any:
    """Import ``ir_measures`` or raise :class:`BackendUnavailableError` with the install command."""
    try:
        import ir_measures
    except ImportError as e:
        raise BackendUnavailableError(
            'IR metrics need ir_measures, which is not installed: pip install "papercore[retrieval]"'
        ) from e
    return ir_measures


def _parse(ir_measures: Any, metric: str) -> Any:
    try:
        return ir_measures.parse_measure(metric)
    except Exception as e:  # ir_measures raises several types for bad names
        raise MalformedInputError(
            f"unknown IR metric {metric!r} (ir_measures names, e.g. 'MRR@10', 'R@100', "
            f"'nDCG@10', 'P@5', 'AP'): {e}"
        ) from None


def _prepare(run: Mapping[str, Mapping[str, float]], qrels: Any) -> tuple[Run, Qrels]:
    qrels_n = as_qrels(qrels)
    if not qrels_n:
        raise MalformedInputError("qrels has no query with a relevant document")
    if not isinstance(run, Mapping):
        raise MalformedInputError(
            f"run must be a dict qid -> {{docid: score}}, got {type(run).__name__}"
        )
    if not run:
        raise MalformedInputError(
            f"run is empty: no query to score against the {len(qrels_n)} judged queries"
        )
    shared = sum(1 for q in qrels_n if q in run)
    if shared == 0:
        raise MalformedInputError(
            f"run and qrels share no query id: run has {len(run)} (e.g. {sorted(run)[:3]}), "
            f"qrels {len(qrels_n)} (e.g. {sorted(qrels_n)[:3]}); wrong split or qrels file?"
        )
    if shared < MIN_SHARED_QUERIES * len(qrels_n):
        logger.warning(
            "only %d of the %d judged queries are in the run (%d run queries): the %d missing "
            "ones count as 0; wrong split or a partial run?",
            shared,
            len(qrels_n),
            len(run),
            len(qrels_n) - shared,
        )
    full: Run = {}
    for qid in qrels_n:
        docs = run.get(qid)
        if docs:
            full[qid] = {str(d): float(s) for d, s in docs.items()}
        else:
            full[qid] = {_MISSING_DOC: 0.0}
    return full, qrels_n


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Any,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Mean of each metric over the queries of ``qrels`` (via ``ir_measures.calc_aggregate``).

    ``metrics`` are ir_measures names (``"MRR@10"`` = ``RR@10``, ``"R@10"``, ``"nDCG@10"``, ...);
    the result is keyed by exactly the given strings. ``qrels`` is anything :func:`as_qrels`
    accepts. **Queries in qrels that are missing from the run (or have an empty ranking) count
    as 0** (a warning is logged when fewer than half of them are in the run); queries in the run
    without qrels are ignored. An empty run, or one sharing no query id with the qrels, raises
    :class:`MalformedInputError` (a wrong split or file, not a score of 0). Ties in score are broken as trec_eval does.
    """
    ir_measures = import_ir_measures()
    if isinstance(metrics, str):
        metrics = (metrics,)
    parsed = {m: _parse(ir_measures, m) for m in metrics}
    full_run, qrels_n = _prepare(run, qrels)
    agg = ir_measures.calc_aggregate(list(set(parsed.values())), qrels_n, full_run)
    return {m: float(agg[p]) for m, p in parsed.items()}


def per_query(
    run: Mapping[str, Mapping[str, float]], qrels: Any, metric: str = "MRR@10"
) -> dict[str, float]:
    """One metric per query of ``qrels`` (via ``ir_measures.iter_calc``); missing queries get 0."""
    ir_measures = import_ir_measures()
    measure = _parse(ir_measures, metric)
    full_run, qrels_n = _prepare(run, qrels)
    values = {qid: 0.0 for qid in qrels_n}
    for m in ir_measures.iter_calc([measure], qrels_n, full_run):
        values[m.query_id] = float(m.value)
    return values


def write_trec_run(
    run: Mapping[str, Mapping[str, float]], path: PathLike, tag: str = "papercore"
) -> Path:
    """Write a run in TREC format (``qid Q0 docid rank score tag``, ranks from 1 by score); atomic."""
    path = Path(path)
    if not tag or any(c.isspace() for c in tag):
        raise MalformedInputError(f"TREC run tag must be one non-empty word, got {tag!r}")
    with atomic_write(path) as fh:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
            for rank, (did, score) in enumerate(ranked, start=1):
                fh.write(f"{qid} Q0 {did} {rank} {float(score)!r} {tag}\n")
    return path


def read_trec_run(path: PathLike) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``); a malformed line names file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TREC run file not found: {path}")
    run: Run = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise MalformedInputError(
                    f"{path}, line {lineno}: expected 6 fields (qid Q0 docid rank score tag), "
                    f"got {len(fields)}: {raw.strip()[:80]!r}"
                )
            qid, _, did, _, score, _ = fields
            try:
                run.setdefault(qid, {})[did] = float(score)
            except ValueError:
                raise MalformedInputError(
                    f"{path}, line {lineno}: score must be a number, got {score!r}"
                ) from None
    return run
