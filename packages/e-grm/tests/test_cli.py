"""The ``e-grm`` CLI on a tiny model and the fixture files; bad input exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egrm_reward.cli import app

FIX = Path(__file__).parent / "fixtures"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("judge", "bestofn", "train-scorer", "eval"):
        assert cmd in res.output


def test_judge_and_eval_on_a_tiny_model(tiny_model_dir, tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text(
        "\n".join(
            json.dumps(r)
            for r in (
                {"prompt": "1 + 1 =", "response_a": "2", "response_b": "3"},
                {"prompt": "2 + 2 ="},
            )
        )
    )
    out = tmp_path / "out.jsonl"
    common = ["--model", str(tiny_model_dir), "--direct-tokens", "3", "--cot-tokens", "4"]
    res = runner.invoke(
        app, ["judge", "--data", str(data), "--output", str(out), *common, "--aggregation", "vote"]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and all(r["route"] in ("short", "long") for r in rows)
    assert "cot_trigger_rate" in res.output
    res = runner.invoke(
        app,
        [
            "eval",
            "--bench",
            f"rewardbench:{FIX / 'rewardbench_tiny.parquet'}",
            *common,
            "--aggregation",
            "vote",
            "--limit",
            "3",
            "--sweep-tau",
            "0.6,1.0",
            "-o",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [r["tau"] for r in rep["rows"]] == [0.6, 1.0]
    assert rep["rows"][1]["cot_trigger_rate"] >= rep["rows"][0]["cot_trigger_rate"]


def test_train_scorer_cli(tiny_model_dir, tmp_path):
    paths = tmp_path / "paths.jsonl"
    paths.write_text(
        json.dumps({"prompt": "1+1", "paths": ["=2 ok", "=3 bad"], "targets": [1, 0]})
        + "\n"
        + json.dumps({"prompt": "2+2", "paths": ["=4 ok", "=5 bad", "=4"], "targets": [1, 0, 1]})
        + "\n"
    )
    res = runner.invoke(
        app,
        [
            "train-scorer",
            "--paths",
            str(paths),
            "--backbone",
            str(tiny_model_dir),
            "-o",
            str(tmp_path / "sc"),
            "--epochs",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sc" / "egrm_scorer.json").exists()
    cands = tmp_path / "c.jsonl"
    cands.write_text(json.dumps({"prompt": "1+1", "candidates": ["=2", "=3"]}) + "\n")
    res = runner.invoke(
        app,
        [
            "bestofn",
            "--data",
            str(cands),
            "-o",
            str(tmp_path / "b.jsonl"),
            "--scorer",
            str(tmp_path / "sc"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b.jsonl").read_text())["best_index"] in (0, 1)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--m", "1"], "must be >= 2"),
        (["--tau", "1.5"], "tau"),
        (["--tau", "0"], "tau"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, needle):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "x"}) + "\n")
    res = runner.invoke(
        app,
        ["judge", "--data", str(data), "-o", str(tmp_path / "o.jsonl"), "--model", "unused", *args],
    )
    assert res.exit_code == 2
    assert needle in res.output and "Traceback" not in res.output


def test_bad_group_file(tmp_path):
    paths = tmp_path / "p.jsonl"
    paths.write_text(json.dumps({"prompt": "1+1", "paths": ["=2"], "targets": [1]}) + "\n")
    res = runner.invoke(
        app, ["train-scorer", "--paths", str(paths), "--backbone", "x", "-o", str(tmp_path / "s")]
    )
    assert res.exit_code == 2 and "GroupSizeError" in res.output
