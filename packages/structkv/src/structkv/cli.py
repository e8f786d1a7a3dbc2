"""The ``structkv`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(name="structkv", help="StructKV: structure-aware KV-cache compression (cross-layer in-degree centrality, dynamic pivot layer, decoupled compute/memory budgets) with its baselines.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """StructKV: structure-aware KV-cache compression (cross-layer in-degree centrality, dynamic pivot layer, decoupled compute/memory budgets) with its baselines."""
