"""quadbert: QuadrupletBERT: bi-encoder retrieval trained with a quadruplet loss (hard vs simple negatives), with faiss indexing and IR evaluation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("quadbert")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
