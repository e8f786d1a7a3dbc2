import json

from typer.testing import CliRunner

from ilp_diag.cli import app

runner = CliRunner()


def test_cli_pipeline(world, world_tok, make_model, tmp_path, one_torch_thread):
    from ilp_diag.records import records_to_rows
    from papercore.io import write_jsonl
    from papercore.testing.builders import save_model_dir

    model_dir = save_model_dir(make_model(5), world_tok, tmp_path / "m")
    data = tmp_path / "train.jsonl"
    write_jsonl(data, records_to_rows(world.records[:8]))
    det, sig, dia = tmp_path / "det.jsonl", tmp_path / "sig.jsonl", tmp_path / "diag.jsonl"
    r = runner.invoke(
        app, ["scan", "-m", str(model_dir), "-d", str(data), "-o", str(det), "--n", "2"]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "signals",
            "--sft-model",
            str(model_dir),
            "--base-model",
            str(model_dir),
            "-d",
            str(data),
            "--detection",
            str(det),
            "--embedder",
            "hash",
            "--n",
            "2",
            "-o",
            str(sig),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["diagnose", "-s", str(sig), "-o", str(dia)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", "--diagnosis", str(dia), "--format", "json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["n"] == 8 and rep["n_unlearned"] == 8  # an untrained model reproduces nothing
    assert "C5" in rep["disabled_rules"]  # no loss log
    out = tmp_path / "fixed.jsonl"
    r = runner.invoke(
        app, ["mitigate", "--cause", "C5", "-d", str(data), "--diagnosis", str(dia), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 8 and abs(sum(x["weight"] for x in rows) - 1) < 1e-6


def test_cli_bad_input_is_one_line_error(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"idx": 0, "prompt": "x"}\n')
    r = runner.invoke(
        app,
        [
            "mitigate",
            "--cause",
            "C3",
            "-d",
            str(data),
            "--diagnosis",
            str(data),
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert r.exit_code == 2
    assert "target" in r.output
