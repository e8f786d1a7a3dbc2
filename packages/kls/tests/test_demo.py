"""The demos end to end (slow: the classification one trains two tiny BERTs, the retrieval one three MiniLMs)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_demo_runs_and_reports_both_methods():
    from kls.demo import run_demo

    res = run_demo()
    assert res.baseline == "hard-label fine-tuning"
    assert 0.0 <= res.value <= 1.0 and 0.0 <= res.baseline_value <= 1.0
    assert set(res.details) >= {"ce", "kls"}


@pytest.mark.slow
def test_retrieval_demo_cli_prints_the_three_methods(minilm_path):
    """``kls demo ret``: MiniLM fine-tuned three ways on one thread; a table with every method."""
    from typer.testing import CliRunner

    from kls.cli import app

    res = CliRunner().invoke(app, ["demo", "ret"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for row in ("zero-shot", "MNRL ", "MNRL + KLS", "MNRL + LE (BM25 prior)", "MRR@10", "nDCG@10"):
        assert row in res.output, res.output


def test_retrieval_demo_rejects_unknown_methods():
    from kls.demo import run_retrieval_demo

    with pytest.raises(ValueError, match="unknown retrieval demo methods"):
        run_retrieval_demo(methods=("mnrl", "bogus"))
