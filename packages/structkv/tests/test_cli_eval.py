"""CLI, evaluation harness and synthetic tasks."""

import json

import pytest
import torch
from typer.testing import CliRunner

from structkv.cli import app
from structkv.evaluate import (
    bootstrap_ci,
    build_press,
    evaluate_method,
    fastkv_equivalent_ratio,
)
from structkv.generation import prefill
from structkv.synthetic.tasks import RecallVocab, make_recall_sample, recall_samples, training_batch

runner = CliRunner()


def test_recall_task_layout():
    vocab = RecallVocab(8, 8, 8)
    s = make_recall_sample(40, 4, 3, torch.Generator().manual_seed(0), vocab)
    assert s.context.shape == (40,) and s.context[0] == vocab.bos
    for q, a, p in zip(s.queries, s.answers, s.pair_positions, strict=True):
        assert s.context[p] == q and s.context[p + 1] == a
    ids, labels = training_batch(2, 40, 4, torch.Generator().manual_seed(0), vocab)
    assert ids.shape == (2, 48) and int((labels != -100).sum()) == 8
    with pytest.raises(ValueError, match="cannot hold"):
        make_recall_sample(5, 4, 1, torch.Generator(), vocab)


def test_recall_task_mentions_repeat_each_key_after_its_pair():
    vocab = RecallVocab(8, 8, 8)
    plain = make_recall_sample(64, 4, 4, torch.Generator().manual_seed(0), vocab)
    for pairs in (False, True):
        s = make_recall_sample(
            64, 4, 4, torch.Generator().manual_seed(0), vocab, mentions=2, mention_pairs=pairs
        )
        assert s.pair_positions == plain.pair_positions and s.answers == plain.answers
        n_mentions = 0
        for q, a, p in zip(s.queries, s.answers, s.pair_positions, strict=True):
            assert s.context[p] == q and s.context[p + 1] == a
            where = (s.context == q).nonzero().flatten().tolist()
            assert where[0] == p and 1 <= len(where) <= 3  # mentions only after the pair
            n_mentions += len(where) - 1
            for w in where[1:]:  # alone, or re-paired with its own value
                nxt = int(s.context[w + 1]) if w + 1 < 64 else None
                assert (nxt == a) if pairs else (nxt != a)
        assert n_mentions >= 6
        # everything else is the plain sample's filler
        assert 0 < int((s.context != plain.context).sum()) <= n_mentions * (2 if pairs else 1)


def test_evaluate_method_full_vs_structkv_reports_cost(make_model):
    model = make_model("llama", "sdpa")
    samples = recall_samples(2, 120, 4, 2, RecallVocab(32, 32, 32), seed=0)
    full = evaluate_method(model, samples, "full", 1.0)
    sk = evaluate_method(model, samples, "structkv", 0.2, 0.6, window_size=8)
    sk_qa = evaluate_method(model, samples, "structkv", 0.2, 0.6, window_size=8, query_aware=True)
    assert full["n"] == sk["n"] == 4 and full["prefill_cost"] == 1.0
    # the cell reports the press's own realised cost and KV fraction, averaged over the contexts
    own = [
        prefill(model, s.context_ids[None], build_press("structkv", 0.2, 0.6, 8, 8)).stats
        for s in samples
    ]
    assert sk["prefill_cost"] == pytest.approx(sum(o["prefill_cost"] for o in own) / 2)
    assert sk["prefill_cost"] < 1.0 and sk["kv_fraction"] == pytest.approx(0.2, abs=0.01)
    assert sk["ttft_s"] >= sk["prefill_s"] > 0 and sk["peak_memory_bytes"] is None
    assert sk_qa["query_aware"] and 0 <= sk_qa["accuracy"] <= 1
    lo, hi = bootstrap_ci([1, 0, 1, 1, 0, 1])
    assert 0 <= lo <= 4 / 6 <= hi <= 1
    assert fastkv_equivalent_ratio(0.6, 32) == pytest.approx((0.6 - 16 / 32) / (1 - 16 / 32))


def test_cli_eval_on_niah_and_jsonl(model_dir8, tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(model_dir8),
            "--dataset",
            "niah:300",
            "--methods",
            "full,snapkv,structkv",
            "--budgets",
            "0.3",
            "--window-size",
            "8",
            "--n",
            "1",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert [r["method"] for r in rows] == ["full", "snapkv", "structkv"]
    # the dynamic pivot may land past prefill_budget (then only the memory budget propagates)
    assert rows[2]["prefill_cost"] < 1.0 and rows[1]["prefill_cost"] == 1.0
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"context": "hello world " * 80, "question": "what?", "answer": "world"}) + "\n"
    )
    res = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(model_dir8),
            "--dataset",
            str(data),
            "--methods",
            "structkv",
            "--budgets",
            "0.3",
            "--window-size",
            "8",
            "--n",
            "1",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["results"][0]["n"] == 1


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--budgets", "1.5"], "budgets"),
        (["--methods", "h2o"], "unknown method"),
        (["--dataset", "missing.jsonl"], "dataset"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(model_dir8, args, msg):
    res = runner.invoke(app, ["eval", "--model", str(model_dir8), "--n", "1", *args])
    assert res.exit_code == 2
    assert msg in res.output


def test_cli_prefill_prints_stats(model_dir8, tmp_path):
    out = tmp_path / "p.json"
    res = runner.invoke(
        app,
        [
            "prefill",
            "--model",
            str(model_dir8),
            "--text",
            "the quick brown fox " * 60,
            "--window-size",
            "8",
            "--kv-budget",
            "0.2",
            "--question",
            "what?",
            "--max-new-tokens",
            "3",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(out.read_text())["stats"]
    assert stats["pivot_layer"] is not None and stats["kv_fraction"] == pytest.approx(0.2, abs=0.01)
    assert "answer" in json.loads(out.read_text())


def test_cli_eval_runtime_flags_longbench_metrics_and_latency(model_dir8, tmp_path):
    data = tmp_path / "lb.jsonl"
    rows = [
        {
            "context": "alpha beta gamma " * 30,
            "input": "which?",
            "answers": ["beta"],
            "dataset": "hotpotqa",
            "max_new_tokens": 3,
        },
        {
            "context": "one two three " * 30,
            "input": "count?",
            "answers": ["3"],
            "dataset": "passage_count",
            "max_new_tokens": 3,
        },
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "r.json"
    res = runner.invoke(
        app,
        [
            "eval", "--model", str(model_dir8), "--dataset", str(data), "--methods", "snapkv",
            "--budgets", "0.3", "--window-size", "8", "--n", "2", "--use-triton", "off",
            "--attn", "eager", "--question-mode", "tokenwise", "--dtype", "float32",
            "--device", "cpu", "-o", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["chat_template"] is True and got["runtime"]["attn"] == "eager"
    assert got["runtime"]["use_triton"] is False and got["runtime"]["question_mode"] == "tokenwise"
    for r in got["results"]:
        assert r["question_mode"] == "tokenwise" and r["n"] == 2
        assert set(r["scores_by_metric"]) == {"qa_f1", "count"}
        assert 0 <= r["score"] <= 1 and r["ttft_s"] > 0 and r["prefill_s"] > 0
        assert r["ttft_s"] >= r["prefill_s"] and r["decode_s_per_token"] > 0
        assert r["peak_memory_bytes"] is None and r["device"] == "cpu"
    assert "ttft=" in res.output and "peak_mem=n/a (CPU)" in res.output


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--device", "cuda"], "CUDA is not available"),
        (["--device", "tpu9"], "--device"),
        (["--attn", "flash_attention_2", "--device", "cpu"], "needs a CUDA device"),
        (["--attn", "flex"], "--attn: expected one of"),
        (["--use-triton", "maybe"], "--use-triton"),
        (["--use-triton", "on", "--device", "cpu"], "TRITON_INTERPRET=1"),
        (["--question-mode", "fast"], "--question-mode"),
        (["--dtype", "fp8"], "--dtype"),
        (["--metric", "bleu"], "unknown metric"),
    ],
)
def test_cli_runtime_options_are_validated_before_loading(tmp_path, monkeypatch, args, msg):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    missing = str(tmp_path / "no-such-model")  # loading it would fail with another message
    for cmd in (["eval", "--n", "1"], ["prefill", "--text", "hello"]):
        if cmd[0] == "prefill" and args[0] == "--metric":
            continue
        res = runner.invoke(app, [*cmd, "--model", missing, *args])
        assert res.exit_code == 2, res.output
        assert msg in res.output and "no-such-model" not in res.output, res.output


def test_cli_prefill_save_context_then_ask(model_dir8, tmp_path):
    ctx = tmp_path / "ctx.safetensors"
    common = ["--model", str(model_dir8), "--max-new-tokens", "4"]
    p_out, a_out = tmp_path / "p.json", tmp_path / "a.json"
    text = ["--text", "the quick brown fox jumps " * 40, "--window-size", "8", "--kv-budget", "0.2"]
    res = runner.invoke(
        app,
        [
            "prefill",
            *common,
            *text,
            "--question",
            "what?",
            "--save-context",
            str(ctx),
            "-o",
            str(p_out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert ctx.exists()
    res = runner.invoke(
        app, ["prefill", *common, *text, "--save-context", str(ctx), "-o", str(p_out)]
    )
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = runner.invoke(
        app,
        [
            "ask",
            *common,
            "--context-file",
            str(ctx),
            "--question",
            "what?",
            "--question",
            "who?",
            "-o",
            str(a_out),
        ],
    )
    assert res.exit_code == 0, res.output
    answers = json.loads(a_out.read_text())["answers"]
    assert len(answers) == 2 and answers[0] == json.loads(p_out.read_text())["answer"]
    res = runner.invoke(
        app, ["ask", *common, "--context-file", str(tmp_path / "nope"), "--question", "x"]
    )
    assert res.exit_code == 2 and "no saved context" in res.output
