"""kls: Keyword label smoothing (KLS) and label enhancement (LE): soft labels for text classification and embedding retrieval."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kls")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
