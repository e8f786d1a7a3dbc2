from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crps_synth import MCTS, MCTSConfig
from crps_synth import pipeline as stages
from crps_synth.cli import app
from crps_synth.toy import ToyExplorer
from crps_synth.verify import StringVerifier

runner = CliRunner()


def test_help_lists_every_stage():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("explore", "pair", "critique", "synthesize", "export", "train", "demo"):
        assert cmd in res.output


def test_pair_and_export_commands(toy_problems, tmp_path):
    stages.explore(
        toy_problems[:4], MCTS(ToyExplorer(), StringVerifier(), MCTSConfig()), tmp_path / "e.jsonl"
    )
    res = runner.invoke(
        app, ["pair", str(tmp_path / "e.jsonl"), "-o", str(tmp_path / "p.jsonl"), "--k", "4"]
    )
    assert res.exit_code == 0, res.output
    rows = stages.read_stage(tmp_path / "p.jsonl")
    assert len(rows) == 4 and all(len(r["pairs"]) <= 4 for r in rows)
    res = runner.invoke(
        app,
        ["pair", str(tmp_path / "e.jsonl"), "-o", str(tmp_path / "q.jsonl"), "--hard-ratio", "1.5"],
    )
    assert res.exit_code == 2 and "hard_ratio must be in [0, 1]" in res.output


@pytest.mark.parametrize(
    ("content", "msg"), [('{"id": "a", "problem": "x"}\n', "no gold answer"), ("", "empty")]
)
def test_explore_bad_problems_exit_2(tmp_path, content, msg):
    f = tmp_path / "probs.jsonl"
    f.write_text(content)
    res = runner.invoke(
        app, ["explore", str(f), "--model", "nowhere", "-o", str(tmp_path / "e.jsonl")]
    )
    assert res.exit_code == 2 and msg in res.output


def test_export_on_missing_input_exit_2(tmp_path):
    res = runner.invoke(
        app, ["export", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "o.jsonl")]
    )
    assert res.exit_code == 2 and "does not exist" in res.output
