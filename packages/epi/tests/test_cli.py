from __future__ import annotations

import json

from typer.testing import CliRunner

from epi.cli import app
from papercore.io import write_jsonl

runner = CliRunner()


def _data(path, with_task=True):
    rows = [
        {
            "prompt": f"add {i} and {i + 1} =",
            "completion": f" {2 * i + 1}",
            **({"task": ["math", "copy"][i % 2]} if with_task else {}),
        }
        for i in range(24)
    ]
    write_jsonl(path, rows)
    return path


def test_train_pooled_and_per_task(tiny_model_dir, tmp_path):
    data = _data(tmp_path / "mix.jsonl")
    for extra in ([], ["--task-field", "task", "--mode", "freeze_other_tasks"], ["--static"]):
        out = tmp_path / ("run" + "".join(extra).replace("-", ""))
        res = runner.invoke(
            app,
            [
                "train",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(data),
                "--output",
                str(out),
                "--isolation-ratio",
                "0.05",
                "--update-interval",
                "2",
                "--max-steps",
                "4",
                "--batch-size",
                "4",
                "--lr",
                "1e-3",
                *extra,
            ],
        )
        assert res.exit_code == 0, res.output
        assert "EPI state:" in res.output and "GB" in res.output
        summary = json.loads((out / "epi_drift.json").read_text())
        assert len(summary["drift"]) == (1 if "--static" in extra else 2)
        assert (out / "epi_state.pt").exists()
        if "--task-field" in extra:
            assert summary["tasks"] == {"copy": 0, "math": 1}


def test_drift_and_bad_input(tiny_model_dir, tmp_path):
    data = _data(tmp_path / "d.jsonl", with_task=False)
    out = tmp_path / "drift.json"
    res = runner.invoke(
        app,
        [
            "drift",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--output",
            str(out),
            "--interval",
            "2",
            "--max-steps",
            "6",
            "--batch-size",
            "4",
            "--isolation-ratio",
            "0.05",
            "--lr",
            "1e-3",
        ],
    )
    assert res.exit_code == 0, res.output
    recs = json.loads(out.read_text())["records"]
    assert [r["step"] for r in recs] == [2, 4, 6] and recs[0]["jaccard_first"] == 1.0
    res = runner.invoke(
        app,
        [
            "train",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--isolation-ratio",
            "1.5",
            "--output",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 2 and "isolation_ratio must be in (0, 1)" in res.output
    res = runner.invoke(
        app,
        [
            "train",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--task-field",
            "task",
            "--output",
            str(tmp_path / "y"),
        ],
    )
    assert res.exit_code == 2 and "task field 'task'" in res.output
