"""``structkv.pivot.trace_context`` and the ``structkv trace`` command: the pivot and the top hub tokens."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from structkv.cli import app
from structkv.errors import PressConfigError
from structkv.pivot import trace_context


def test_trace_rejects_what_it_cannot_trace(make_model, context_ids):
    from structkv import SnapKVPress

    model = make_model("llama", "sdpa")
    with pytest.raises(PressConfigError, match="StructKVPress"):
        trace_context(model, context_ids, SnapKVPress())
    with pytest.raises(PressConfigError, match="one context"):
        trace_context(model, context_ids.expand(2, -1), None)
    with pytest.raises(PressConfigError, match="not scored"), pytest.warns(UserWarning):
        trace_context(model, context_ids[:, :20], None)


def test_cli_trace_prints_the_top_hubs(model_dir8, tmp_path):
    out = tmp_path / "t.json"
    res = CliRunner().invoke(
        app,
        [
            "trace",
            "--model",
            str(model_dir8),
            "--text",
            "the quick brown fox jumps over the lazy dog " * 20,
            "--window-size",
            "8",
            "--kv-budget",
            "0.2",
            "--top",
            "5",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "pivot layer" in res.output and "in-degree" in res.output
    data = json.loads(out.read_text())
    assert len(data["hubs"]) == 5 and all(isinstance(h["text"], str) for h in data["hubs"])
    assert data["pivot_layer"] in (2, 3) and len(data["trace"]) == data["pivot_layer"] + 1
    assert torch.tensor([h["centrality"] for h in data["hubs"]]).diff().le(0).all()
    bad = CliRunner().invoke(
        app, ["trace", "--model", str(model_dir8), "--text", "x", "--input-file", "y"]
    )
    assert bad.exit_code != 0 and "exactly one" in bad.output
