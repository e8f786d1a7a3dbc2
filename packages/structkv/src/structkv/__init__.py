"""structkv: StructKV: structure-aware KV-cache compression (cross-layer in-degree centrality, dynamic pivot layer, decoupled compute/memory budgets) with its baselines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("structkv")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
