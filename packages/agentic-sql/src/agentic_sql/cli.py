"""The ``agentic-sql`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(name="agentic-sql", help="Multi-turn Text-to-SQL agent trained with GRPO: trajectory reward ATR over per-turn CSMR scores, in a read-only SQLite sandbox.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """Multi-turn Text-to-SQL agent trained with GRPO: trajectory reward ATR over per-turn CSMR scores, in a read-only SQLite sandbox."""
