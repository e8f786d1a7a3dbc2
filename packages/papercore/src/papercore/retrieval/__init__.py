"""Shared retrieval layer (extra ``papercore[retrieval]``: faiss-cpu, ir-measures, bm25s).

* :mod:`papercore.retrieval.data` — :data:`Qrels` / :data:`Run` types, :class:`RetrievalData`,
  BEIR-layout loaders and writers (no ``beir`` package needed);
* :mod:`papercore.retrieval.bm25` — :class:`BM25Index`: the workspace's one BM25 (bm25s, Lucene
  variant, explicit ``keep_zero_scores``, custom tokenizers), same ``index`` / ``search`` shape;
* :mod:`papercore.retrieval.faiss_index` — :class:`FaissRetriever`: any encoder + faiss
  flat / IVF / HNSW over L2-normalised vectors;
* :mod:`papercore.retrieval.metrics` — :func:`evaluate_run` / :func:`per_query` via ``ir_measures``,
  TREC run files;
* :mod:`papercore.retrieval.synthetic` — :func:`make_synthetic_retrieval`, a deterministic English
  collection with natural hard negatives;
* :mod:`papercore.retrieval.compare` — :func:`paired_compare`: two systems over paired seeds
  (per-seed deltas, win counts, paired t / Wilcoxon / sign tests).

``import papercore.retrieval`` imports neither torch nor faiss nor ir_measures nor bm25s; they are
imported when first needed, and a missing one raises :class:`papercore.errors.BackendUnavailableError`
with the install command.
"""

from papercore.retrieval.bm25 import BM25Index, stopword_list
from papercore.retrieval.compare import PairedComparison, paired_compare
from papercore.retrieval.data import (
    Qrels,
    RetrievalData,
    Run,
    as_qrels,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
    save_beir,
)
from papercore.retrieval.faiss_index import FaissRetriever, check_texts, default_nlist
from papercore.retrieval.metrics import (
    DEFAULT_METRICS,
    evaluate_run,
    per_query,
    read_trec_run,
    write_trec_run,
)
from papercore.retrieval.synthetic import SyntheticRetrieval, make_synthetic_retrieval

__all__ = [
    "BM25Index",
    "DEFAULT_METRICS",
    "FaissRetriever",
    "PairedComparison",
    "Qrels",
    "RetrievalData",
    "Run",
    "SyntheticRetrieval",
    "as_qrels",
    "check_texts",
    "default_nlist",
    "evaluate_run",
    "load_beir",
    "load_corpus",
    "load_qrels",
    "load_queries",
    "make_synthetic_retrieval",
    "paired_compare",
    "per_query",
    "read_trec_run",
    "save_beir",
    "stopword_list",
    "write_trec_run",
]
