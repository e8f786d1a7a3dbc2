"""The ``quadbert`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(name="quadbert", help="QuadrupletBERT: bi-encoder retrieval trained with a quadruplet loss (hard vs simple negatives), with faiss indexing and IR evaluation.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """QuadrupletBERT: bi-encoder retrieval trained with a quadruplet loss (hard vs simple negatives), with faiss indexing and IR evaluation."""
