"""A real TRL ``GRPOTrainer`` with ``AsyncSQLEnvironment``: TRL finds the coroutine tools, runs them
on its async loop, and the environment's reward reaches training (issue 21, §4).

Same setup as ``test_grpo.py``'s tools-protocol run (the SFT warm start is shared through pytest's
cache): a tiny Qwen2 warm-started on the call format really calls the tools.
"""

from __future__ import annotations

import importlib.resources
import inspect
import math
import os

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from agentic_sql.atr import trajectory_reward
from agentic_sql.env import AsyncSQLEnvironment, make_environment_factory
from agentic_sql.train import TrainConfig, build_trainer, trajectory_sft_pairs, warm_start_sft

CITIES = ("paris", "rome")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models gain nothing from a second thread on a busy 2-core machine."""


def make_rows():
    return [
        {
            "prompt": [{"role": "user", "content": f"List name and city of customers in {c}."}],
            "db_id": "shop",
            "gold_sql": f"SELECT name, city FROM customers WHERE city = '{c}'",
        }
        for c in CITIES
    ]


def trajectories():
    return [
        [f"SELECT name FROM customers WHERE city = '{c}'", r["gold_sql"]]
        for c, r in zip(CITIES, make_rows(), strict=True)
    ]


class Recorder:
    """A weight-0 reward recording each rollout's environment (type, scores, reward)."""

    __name__ = "recorder"

    def __init__(self):
        self.steps = []

    def __call__(self, completions, environments=None, **kw):
        self.steps.append(
            [
                (type(e).__name__, list(e.turn_scores), list(e.turn_errors), e.final_ex,
                 e.format_ok, e.get_reward())
                for e in environments
            ]
        )  # fmt: skip
        return [0.0] * len(completions)


@pytest.mark.slow  # ~1-4 min on 2 loaded cores (SFT warm start + 2 GRPO steps); passed 2026-12-02
def test_grpo_trainer_runs_the_async_tools(tmp_path_factory, make_shop_db, papercore_cache_dir):
    from datasets import Dataset

    from papercore.models import load_model, load_tokenizer
    from papercore.testing.builders import build_causal_tokenizer

    customers = [(1, "ann", "paris", 34), (2, "bob", "rome", 25), (3, "cy", "paris", 41)]
    root = make_shop_db(tmp_path_factory.mktemp("dbs"), customers)
    rows = make_rows()
    factory = make_environment_factory(root, isolation="thread", max_turns=3)
    tpl = importlib.resources.files("trl").joinpath("chat_templates/qwen2_5.jinja").read_text()
    pairs = trajectory_sft_pairs(
        rows, trajectories(), build_causal_tokenizer(chat_template=tpl), factory, protocol="tools"
    )
    factory.close()
    tok_kwargs = {
        "chat_template": tpl,
        "vocab_size": 1024,
        "extra_texts": [p + t for p, t in pairs],
    }
    sft = warm_start_sft(
        pairs, papercore_cache_dir, steps=250, batch_size=6, lr=3e-3, tokenizer_kwargs=tok_kwargs
    )
    tok, model = load_tokenizer(str(sft)), load_model(str(sft), dtype="float32")
    model.generation_config.eos_token_id = [
        tok.eos_token_id,
        tok.convert_tokens_to_ids("<|im_end|>"),
    ]
    cfg = TrainConfig(
        model="unused",
        output_dir=str(tmp_path_factory.mktemp("out")),
        protocol="tools",
        reward="atr",
        max_turns=3,
        isolation="process",
        max_new_tokens_per_turn=48,
        grpo={
            "max_steps": 2,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "max_completion_length": 160,
            "learning_rate": 1e-5,
            "temperature": 0.7,
            "logging_steps": 1,
            "save_strategy": "no",
            "use_cpu": True,
            "disable_tqdm": True,
        },
    )
    rec = Recorder()
    trainer = build_trainer(
        cfg,
        model=model,
        tokenizer=tok,
        train_dataset=Dataset.from_list(rows),
        db_root=root,
        extra_reward_funcs=[rec],
        env_cls=AsyncSQLEnvironment,
    )
    # TRL sorted both tools into its async tool dicts and started its event loop for them
    assert trainer._has_async_funcs
    assert {t.__name__ for t in trainer.tools if inspect.iscoroutinefunction(t)} == {
        "execute_sql",
        "submit_answer",
    }
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/AsyncSQLEnvironment/mean" in h]
    assert len(logs) == 2 and any(h["tools/call_frequency"] > 0 for h in logs)
    assert all(math.isfinite(h["loss"]) for h in logs)
    n_scored = 0
    for step, log in zip(rec.steps, logs, strict=True):
        expected = []
        for name, scores, errors, final_ex, fmt, reward in step:
            assert name == "AsyncSQLEnvironment"
            r = trajectory_reward(scores, errors, final_ex=final_ex, format_ok=fmt)
            assert reward == pytest.approx(r)
            expected.append(r)
            n_scored += bool(scores)
        assert log["rewards/AsyncSQLEnvironment/mean"] == pytest.approx(
            sum(expected) / len(expected), abs=1e-5
        )
    assert n_scored >= 1  # the async tools executed SQL and their scores are in the reward
