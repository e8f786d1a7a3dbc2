"""The agentic-sql CLI: every command's happy path and a clear one-line error for bad input."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from agentic_sql.atr import aggregate_trajectory_reward
from agentic_sql.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory, make_shop_db):
    customers = [(1, "ann", "paris", 34), (2, "bob", "rome", 25), (3, "cy", "paris", 41)]
    return make_shop_db(tmp_path_factory.mktemp("dbs"), customers)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_every_command():
    res = invoke("--help")
    assert res.exit_code == 0
    for cmd in ("exec", "score", "atr", "check-matrix", "train", "eval", "synth", "demo"):
        assert cmd in res.output


def test_atr_command_prints_value_and_path():
    res = invoke("atr", "--scores", "0,0.5,1", "--errors", "1,0,0")
    assert res.exit_code == 0, res.output
    expected = aggregate_trajectory_reward([0, 0.5, 1], [True, False, False])
    assert f"ATR = {expected:.6g}" in res.output
    assert "0 (v=0) -> 0 (v=0) -> 2 (v=0.505) -> 4 (v=1)" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scores", "0,1.5"], "[0, 1]"),
        (["--scores", "a,b"], "comma-separated"),
        (["--scores", "0,1", "--errors", "1"], "turn_errors has 1"),
        (["--scores", "1", "--beta", "0.5"], "beta must be > alpha"),
    ],
)
def test_atr_command_bad_input_is_one_line_exit_2(args, message):
    res = invoke("atr", *args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_check_matrix_exit_codes():
    ok = invoke("check-matrix")
    assert ok.exit_code == 0 and "dissipative: yes" in ok.output
    bad = invoke("check-matrix", "--alpha", "2", "--beta", "1")
    assert bad.exit_code == 1 and "dissipative: NO" in bad.output


def test_exec_command(root):
    res = invoke(
        "exec",
        "--db-root",
        root,
        "--db-id",
        "shop",
        "SELECT name FROM customers WHERE city = 'paris'",
        "DROP TABLE customers",
    )
    assert res.exit_code == 0, res.output
    assert "ann" in res.output and "cy" in res.output and "Error" in res.output
    missing = invoke("exec", "--db-root", root, "--db-id", "nowhere", "SELECT 1")
    assert missing.exit_code == 2 and "nowhere" in missing.output


def test_synth_command(tmp_path):
    res = invoke("synth", "--output", tmp_path / "s", "--n-dbs", 1, "--n-questions", 12)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "shop" / "shop.sqlite").exists()
    assert "12 questions" in res.output


def test_demo_command():
    res = invoke("demo")
    assert res.exit_code == 0, res.output
    assert "ATR over per-turn CSMR" in res.output and "binary EX" in res.output


def write_cfg(path, **kw):
    path.write_text(yaml.safe_dump(kw))
    return path


def test_train_bad_configs(tmp_path):
    missing = invoke("train", "--config", tmp_path / "nope.yaml")
    assert missing.exit_code == 2 and "config file not found" in missing.output
    unknown = invoke("train", "--config", write_cfg(tmp_path / "u.yaml", model="m", lr=1))
    assert unknown.exit_code == 2 and "unknown setting(s) ['lr']" in unknown.output
    bad = invoke("train", "--config", write_cfg(tmp_path / "b.yaml", model="m", reward="dense"))
    assert bad.exit_code == 2 and "reward must be one of" in bad.output
    nomodel = invoke("train", "--config", write_cfg(tmp_path / "n.yaml", reward="atr"))
    assert nomodel.exit_code == 2 and "'model'" in nomodel.output


def test_train_malformed_yaml_is_one_line_with_file_and_line(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("model: m\nreward: atr\n  protocol: text\n")  # bad indentation on line 3
    res = invoke("train", "--config", cfg)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    text = " ".join(res.output.split())
    assert f"{cfg}: invalid YAML at line 3" in text
    cfg.write_text("model: [m\n")  # unclosed flow sequence
    res = invoke("train", "--config", cfg)
    assert res.exit_code == 2 and "invalid YAML at line" in " ".join(res.output.split())


def test_train_checkpoints_and_resumes(tmp_path, root, tiny_model_dir):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"names in {c}"}],
            "db_id": "shop",
            "gold_sql": f"SELECT name FROM customers WHERE city = '{c}'",
        }
        for c in ("paris", "rome")
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    grpo = {
        "max_steps": 1,
        "num_generations": 2,
        "per_device_train_batch_size": 2,
        "max_completion_length": 12,
        "save_steps": 1,
        "use_cpu": True,
        "disable_tqdm": True,
    }
    cfg = write_cfg(
        tmp_path / "cfg.yaml",
        model=str(tiny_model_dir),
        output_dir=str(tmp_path / "run"),
        db_root=str(root),
        data={"kind": "jsonl", "path": str(data)},
        protocol="text",
        reward="atr",
        max_turns=2,
        isolation="thread",
        max_new_tokens_per_turn=8,
        grpo=grpo,
    )
    first = invoke("train", "--config", cfg)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "run" / "checkpoint-1").is_dir()
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert '"resumed_from": null' in first.output
    grpo["max_steps"] = 2
    cfg2 = write_cfg(tmp_path / "cfg2.yaml", **{**yaml.safe_load(cfg.read_text()), "grpo": grpo})
    second = invoke("train", "--config", cfg2)
    assert second.exit_code == 0, second.output
    assert "checkpoint-1" in second.output and (tmp_path / "run" / "checkpoint-2").is_dir()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from agentic_sql.data import make_synthetic_task_suite

    out = tmp_path_factory.mktemp("suite")
    ds, root = make_synthetic_task_suite(n_dbs=1, n_questions=6, seed=0, out_dir=out)
    return ds, root


def test_score_command(suite, tmp_path):
    ds, root = suite
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(list(ds["gold_sql"])))
    res = invoke(
        "score",
        "--db-root",
        root,
        "--pred",
        preds,
        "--gold",
        root / "dev.json",
        "--output",
        tmp_path / "m.json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "m.json").read_text())["ex"] == 1.0
    wrong = [*ds["gold_sql"][:-1], "SELECT 1"]
    preds.write_text(json.dumps(wrong))
    res = invoke(
        "score",
        "--db-root",
        root,
        "--pred",
        preds,
        "--gold",
        root / "dev.json",
        "--metric",
        "csmr",
        "--output",
        tmp_path / "c.json",
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "c.json").read_text())["csmr"] == pytest.approx(5 / 6)
    preds.write_text(json.dumps(["SELECT 1"]))
    bad = invoke("score", "--db-root", root, "--pred", preds, "--gold", root / "dev.json")
    assert bad.exit_code == 2 and "1 predictions" in bad.output
    bad = invoke(
        "score", "--db-root", root, "--pred", preds, "--gold", root / "dev.json", "--metric", "f1"
    )
    assert bad.exit_code == 2 and "--metric" in bad.output


def test_score_command_reads_bird_predictions_with_clear_errors(suite, tmp_path):
    from agentic_sql.eval import BIRD_SEPARATOR

    ds, root = suite
    preds = tmp_path / "predict_dev.json"

    def score(obj_or_text):
        text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
        preds.write_text(text)
        res = invoke("score", "--db-root", root, "--pred", preds, "--gold", root / "dev.json")
        return res, " ".join(res.output.split())

    bird = {str(i): f"{r['gold_sql']}{BIRD_SEPARATOR}{r['db_id']}" for i, r in enumerate(ds)}
    res, _ = score(bird)
    assert res.exit_code == 0, res.output
    res, text = score({**bird, "first": bird["0"]})
    assert res.exit_code == 2 and str(preds) in text and "key 'first' is not an integer" in text
    res, text = score('{"0": "SELECT 1",\n "1": }')
    assert res.exit_code == 2 and str(preds) in text and "invalid JSON at line 2" in text
    res, text = score({k: v for k, v in bird.items() if k != "2"})
    assert res.exit_code == 2 and "index 2 is missing" in text
    res, text = score({**bird, "1": "SELECT 1"})
    assert res.exit_code == 2 and "entry 1 is not of the form" in text
    res, text = score(["SELECT 1", 2])
    assert res.exit_code == 2 and "item 1 is a int" in text


def test_eval_command(suite, tiny_model_dir, tmp_path):
    _ds, root = suite
    res = invoke(
        "eval",
        "--model",
        tiny_model_dir,
        "--db-root",
        root,
        "--data",
        root / "dev.json",
        "--limit",
        2,
        "--max-turns",
        1,
        "--protocol",
        "text",
        "--max-new-tokens",
        8,
        "--output",
        tmp_path / "e.json",
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["n"] == 2 and 0.0 <= metrics["ex"] <= 1.0
    missing = invoke("eval", "--model", tiny_model_dir, "--data", root / "dev.json")
    assert missing.exit_code == 2 and "--db-root" in missing.output
