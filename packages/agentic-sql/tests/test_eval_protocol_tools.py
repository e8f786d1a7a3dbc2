"""Issue 21 §5: ``agentic-sql eval`` plays the protocol the model was trained with.

* tools protocol: the chat template renders the environment's two tools, each generated turn is
  parsed with TRL's ``parse_response``, tool calls run on the same ``SQLEnvironment`` class as in
  training, and tool results come back as ``tool`` messages (tiny Qwen2 + TRL's qwen2_5 template);
* a vLLM backend option (built, not run: vLLM needs a GPU), ``--max-new-tokens``, ``--batch-size``,
  ``--timeout``, ``--output-dir`` with BIRD's prediction files, literals kept byte for byte.
"""

from __future__ import annotations

import importlib.resources
import json
from types import SimpleNamespace
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from agentic_sql.cli import app
from agentic_sql.eval import (
    BIRD_SEPARATOR,
    ToolsProtocolAgent,
    make_generation_backend,
    run_agent_eval,
)
from agentic_sql.executor import SQLiteExecutor

runner = CliRunner()
GOLD = "SELECT name FROM customers WHERE city = 'paris'"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models gain nothing from a second thread."""


def qwen_template() -> str:
    return importlib.resources.files("trl").joinpath("chat_templates/qwen2_5.jinja").read_text()


@pytest.fixture(scope="module")
def qwen_tok():
    from papercore.testing.builders import build_causal_tokenizer

    return build_causal_tokenizer(chat_template=qwen_template())


@pytest.fixture(scope="module")
def root(tmp_path_factory, make_shop_db):
    return make_shop_db(tmp_path_factory.mktemp("dbs"))


def rows(n=2):
    return [
        {
            "prompt": [
                {"role": "system", "content": "Answer with the tools."},
                {"role": "user", "content": f"Who lives in paris? ({i})"},
            ],
            "db_id": "shop",
            "gold_sql": GOLD,
            "question_id": i,
        }
        for i in range(n)
    ]


def call(name: str, query: str) -> str:
    body = json.dumps({"name": name, "arguments": {"query": query}})
    return f"<tool_call>\n{body}\n</tool_call><|im_end|>"


class ScriptedChatBackend:
    """A papercore-style backend answering with scripted assistant turns (a random tiny model never
    calls a tool); records every rendered prompt it was given."""

    def __init__(self, tokenizer, script):
        self.tokenizer = tokenizer
        self.script = script  # turn index -> assistant text
        self.prompts: list[list[str]] = []

    def generate(self, prompts, cfg):
        from papercore.generation import Completion

        self.prompts.append(list(prompts))
        turn = len(self.prompts) - 1
        text = self.script[min(turn, len(self.script) - 1)]
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return [[Completion(text=text, token_ids=ids)] for _ in prompts]


def test_tools_agent_plays_the_training_environment_through_the_chat_template(root, qwen_tok):
    script = [
        call("execute_sql", "SELECT name, city FROM customers"),
        call("submit_answer", GOLD),
        "Done.<|im_end|>",
    ]
    backend = ScriptedChatBackend(qwen_tok, script)
    with SQLiteExecutor(root, isolation="thread") as ex:
        agent = ToolsProtocolAgent(backend, ex, max_turns=3)
        answers = agent.predict_batch(rows())
    assert [a.final_sql for a in answers] == [GOLD, GOLD]
    assert [a.n_turns for a in answers] == [2, 2]
    assert len(backend.prompts) == 2  # both episodes ended at submit_answer: no third call
    first, second = backend.prompts[0][0], backend.prompts[1][0]
    # the tool schemas of the training environment are in the prompt
    assert '"name": "execute_sql"' in first and '"name": "submit_answer"' in first
    # the observation of the first call comes back as a tool message (Qwen: <tool_response>)
    assert "<tool_response>" in second and "ann | paris" in second and "turns left" in second


def test_tools_agent_handles_bad_calls_like_trl_and_stops_without_a_call(root, qwen_tok):
    script = [call("drop_table", "x"), "I give up.<|im_end|>"]
    backend = ScriptedChatBackend(qwen_tok, script)
    with SQLiteExecutor(root, isolation="thread") as ex:
        answers = ToolsProtocolAgent(backend, ex, max_turns=3).predict_batch(rows(1))
    assert answers[0].final_sql is None and answers[0].n_turns == 0
    assert "Tool drop_table not found." in backend.prompts[1][0]  # returned as {"error": ...}
    assert len(backend.prompts) == 2  # the turn without a tool call ends the episode


def test_tools_protocol_needs_a_tool_template(root, tiny_tokenizer):
    backend = ScriptedChatBackend(tiny_tokenizer, ["x"])
    with (
        SQLiteExecutor(root, isolation="thread") as ex,
        pytest.raises(ValueError, match="--protocol text"),
    ):
        ToolsProtocolAgent(backend, ex)


def test_run_agent_eval_tools_protocol_with_a_real_tiny_qwen2(root, qwen_tok, tmp_path):
    """The real model path: render with tools, generate with transformers, parse, score."""
    from papercore.testing.builders import tiny_causal_lm

    model = tiny_causal_lm("qwen2", tokenizer=qwen_tok)
    m = run_agent_eval(
        model, qwen_tok, rows(), protocol="tools", db_root=root, isolation="thread",
        max_turns=2, max_new_tokens_per_turn=6, batch_size=2, output_dir=tmp_path / "out",
    )  # fmt: skip
    assert m["n"] == 2 and m["decoding"]["protocol"] == "tools"
    assert m["n_no_answer"] == 2 and m["ex"] == 0.0  # a random model never calls a tool
    preds = json.loads((tmp_path / "out" / "predict_dev.json").read_text())
    assert list(preds) == ["0", "1"] and preds["0"].endswith(f"{BIRD_SEPARATOR}shop")


# --------------------------------------------------------------------------- vLLM (built only)


class FakeLLM:
    """Stands in for ``vllm.LLM`` (vLLM cannot run on CPU): records its construction and answers
    every request with one scripted completion in vLLM's ``RequestOutput`` shape."""

    built: ClassVar[list[dict]] = []
    tokenizer = None
    reply = call("submit_answer", "SELECT  name FROM customers WHERE city = 'a  b\tc'")

    def __init__(self, **kwargs):
        FakeLLM.built.append(kwargs)

    def get_tokenizer(self):
        return FakeLLM.tokenizer

    def generate(self, prompts, params, **kw):
        ids = FakeLLM.tokenizer.encode(FakeLLM.reply, add_special_tokens=False)
        out = SimpleNamespace(
            token_ids=ids, text=FakeLLM.reply, logprobs=None, finish_reason="stop"
        )
        return [SimpleNamespace(outputs=[out]) for _ in prompts]


@pytest.fixture
def fake_vllm(monkeypatch, qwen_tok):
    vllm = pytest.importorskip("vllm")
    FakeLLM.built = []
    FakeLLM.tokenizer = qwen_tok
    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    return FakeLLM


def test_vllm_backend_is_built_from_the_model_path(fake_vllm, tmp_path):
    backend = make_generation_backend("vllm", str(tmp_path), seed=3, tensor_parallel_size=2)
    assert fake_vllm.built == [{"model": str(tmp_path), "seed": 3, "tensor_parallel_size": 2}]
    assert backend.name == "vllm" and backend.tokenizer is fake_vllm.tokenizer
    with pytest.raises(TypeError, match="only apply to backend='vllm'"):
        make_generation_backend("transformers", object(), tensor_parallel_size=2)
    with pytest.raises(ValueError, match="backend must be"):
        make_generation_backend("sglang", "m")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory, qwen_tok):
    from papercore.testing.builders import save_model_dir, tiny_causal_lm

    model = tiny_causal_lm("qwen2", tokenizer=qwen_tok)
    return save_model_dir(model, qwen_tok, tmp_path_factory.mktemp("tiny-qwen2-tools"))


@pytest.fixture(scope="module")
def split(tmp_path_factory, root):
    path = tmp_path_factory.mktemp("split") / "dev.json"
    qs = [{"question_id": i, "db_id": "shop", "question": "Who lives in paris?", "evidence": "",
           "SQL": "SELECT name FROM customers WHERE city = 'a  b\tc'", "difficulty": "simple"}
          for i in range(3)]  # fmt: skip
    path.write_text(json.dumps(qs))
    return path


def test_cli_eval_vllm_backend_tools_protocol_and_bird_files(
    fake_vllm, qwen_dir, root, split, tmp_path
):
    out_dir = tmp_path / "preds"
    res = runner.invoke(
        app,
        ["eval", "-m", str(qwen_dir), "--db-root", str(root), "--data", str(split),
         "--backend", "vllm", "--tensor-parallel-size", "2", "--protocol", "tools",
         "--max-new-tokens", "40", "--batch-size", "2", "--timeout", "7", "--max-turns", "2",
         "--output-dir", str(out_dir)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert fake_vllm.built == [{"model": str(qwen_dir), "seed": 0, "tensor_parallel_size": 2}]
    preds = json.loads((out_dir / "predict_dev.json").read_text())
    # BIRD's format, and whitespace inside the literal kept (outside it collapsed)
    expected = "SELECT name FROM customers WHERE city = 'a  b\tc'"
    assert preds == {str(i): f"{expected}{BIRD_SEPARATOR}shop" for i in range(3)}
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["decoding"]["protocol"] == "tools" and metrics["decoding"]["backend"] == "vllm"
    assert metrics["decoding"]["max_new_tokens_per_turn"] == 40 and metrics["timeout_s"] == 7.0
    # the gold file stays tab-separated: the tab inside the literal is written as char(9)
    gold = (out_dir / "dev_gold.sql").read_text().splitlines()
    assert gold[0] == "SELECT name FROM customers WHERE city = ('a  b' || char(9) || 'c')\tshop"


def test_cli_eval_tools_protocol_with_transformers(qwen_dir, root, split, tmp_path):
    res = runner.invoke(
        app,
        ["eval", "-m", str(qwen_dir), "--db-root", str(root), "--data", str(split),
         "--protocol", "tools", "--max-new-tokens", "4", "--batch-size", "3", "--max-turns", "1",
         "--output", str(tmp_path / "m.json")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["n"] == 3 and m["decoding"]["protocol"] == "tools"


def test_cli_eval_rejects_bad_options_before_loading(qwen_dir, root, split, tmp_path):
    base = ["eval", "-m", str(qwen_dir), "--db-root", str(root), "--data", str(split)]
    for extra, msg in (
        (["--protocol", "chat"], "--protocol must be"),
        (["--backend", "sglang"], "--backend must be"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
        (["--timeout", "0"], "--timeout must be > 0"),
        (["--tensor-parallel-size", "2"], "need --backend vllm"),
    ):
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code != 0 and msg in res.output, (extra, res.output)
