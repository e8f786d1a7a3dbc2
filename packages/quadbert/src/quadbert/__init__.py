"""quadbert: QuadrupletBERT bi-encoder retrieval (Liu et al., NAACL 2021).

A sentence-transformers loss on (query, positive, hard negative, simple negative) quadruplets
(:class:`QuadrupletLoss`), a quadruplet miner with BM25 or model hard negatives
(:func:`build_quadruplets`), training through ``SentenceTransformerTrainer`` (:func:`train_quadbert`),
and retrieval with the shared faiss retriever and IR metrics of ``papercore.retrieval``
(re-exported here as :class:`FaissRetriever`, :func:`evaluate_run`, ...).

Names are imported lazily so that ``quadbert --help`` stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from papercore.lazy import lazy_getattr

try:
    __version__ = version("quadbert")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_EXPORTS = {
    "quadbert.losses": ("QuadrupletLoss",),
    "quadbert.mining": ("build_quadruplets",),
    "quadbert.bm25": ("BM25Retriever",),
    "quadbert.train": ("train_quadbert", "default_training_args"),
    "quadbert.index": ("FaissRetriever", "evaluate_run", "read_trec_run", "write_trec_run"),
    "quadbert.data": ("RetrievalData", "load_beir", "make_synthetic_retrieval"),
    "quadbert.errors": (
        "LossConfigError",
        "MiningError",
        "OutputPathError",
        "QuadbertError",
        "TrainDataError",
    ),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "BM25Retriever",
    "FaissRetriever",
    "LossConfigError",
    "MiningError",
    "OutputPathError",
    "QuadbertError",
    "QuadrupletLoss",
    "RetrievalData",
    "TrainDataError",
    "build_quadruplets",
    "default_training_args",
    "evaluate_run",
    "load_beir",
    "make_synthetic_retrieval",
    "read_trec_run",
    "train_quadbert",
    "write_trec_run",
]


__getattr__ = lazy_getattr(__name__, _WHERE)


if TYPE_CHECKING:  # pragma: no cover
    from quadbert.bm25 import BM25Retriever
    from quadbert.data import RetrievalData, load_beir, make_synthetic_retrieval
    from quadbert.errors import (
        LossConfigError,
        MiningError,
        OutputPathError,
        QuadbertError,
        TrainDataError,
    )
    from quadbert.index import FaissRetriever, evaluate_run, read_trec_run, write_trec_run
    from quadbert.losses import QuadrupletLoss
    from quadbert.mining import build_quadruplets
    from quadbert.train import default_training_args, train_quadbert
