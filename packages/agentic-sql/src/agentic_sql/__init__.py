"""agentic-sql: Multi-turn Text-to-SQL agent trained with GRPO: trajectory reward ATR over per-turn CSMR scores, in a read-only SQLite sandbox."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentic-sql")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
