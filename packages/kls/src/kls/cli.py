"""The ``kls`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(name="kls", help="Keyword label smoothing (KLS) and label enhancement (LE): soft labels for text classification and embedding retrieval.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """Keyword label smoothing (KLS) and label enhancement (LE): soft labels for text classification and embedding retrieval."""
