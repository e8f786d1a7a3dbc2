"""Real TRL GRPOTrainer runs (a few steps, tiny Qwen2) on both protocols: per-turn scores reach the reward.

A random tiny model never emits a tool call or an ``<sql>`` tag, so each protocol starts from a
short SFT warm start on the call format (cached in pytest's cache through papercore), then GRPO
runs two steps. A weight-0 spy reward records what each rollout's environment scored, and the
logged training reward must equal ATR computed from exactly those per-turn scores.
"""

from __future__ import annotations

import importlib.resources
import math
import os

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from agentic_sql.atr import trajectory_reward
from agentic_sql.env import SQLEnvironment, make_environment_factory
from agentic_sql.train import (
    TrainConfig,
    build_trainer,
    trajectory_sft_pairs,
    warm_start_sft,
)

CITIES = ("paris", "rome")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models gain nothing from a second thread, which spin-waits on a busy 2-core machine."""


@pytest.fixture(scope="module")
def root(tmp_path_factory, make_shop_db):
    customers = [(1, "ann", "paris", 34), (2, "bob", "rome", 25), (3, "cy", "paris", 41)]
    return make_shop_db(tmp_path_factory.mktemp("dbs"), customers)


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
    # explore with a partially right query (one of two columns), then submit the answer
    return [
        [f"SELECT name FROM customers WHERE city = '{c}'", r["gold_sql"]]
        for c, r in zip(CITIES, make_rows(), strict=True)
    ]


def qwen_template() -> str:
    return importlib.resources.files("trl").joinpath("chat_templates/qwen2_5.jinja").read_text()


class Spy:
    """A weight-0 reward function recording what the rewards saw, per step."""

    __name__ = "spy"

    def __init__(self):
        self.steps = []

    def __call__(self, completions, environments=None, **kw):
        if environments is not None:
            self.steps.append(
                [
                    {
                        "turn_scores": list(e.turn_scores),
                        "turn_errors": list(e.turn_errors),
                        "final_ex": e.final_ex,
                        "format_ok": e.format_ok,
                        "n_turns": e.n_turns,
                        "reward": e.get_reward(),
                    }
                    for e in environments
                ]
            )
        else:
            self.steps.append(
                [
                    {
                        "turn_scores": list(kw["turn_scores"][i]),
                        "turn_errors": list(kw["turn_errors"][i]),
                        "final_ex": kw["final_ex"][i],
                        "format_ok": kw["format_ok"][i],
                        "n_turns": kw["n_turns"][i],
                    }
                    for i in range(len(completions))
                ]
            )
        return [0.0] * len(completions)


def grpo_cfg(tmp_path, protocol):
    return TrainConfig(
        model="unused",
        output_dir=str(tmp_path / protocol),
        protocol=protocol,
        reward="atr",
        max_turns=3,
        isolation="thread",
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


def check_reward_matches_turn_scores(spy, logs, reward_key, max_turns):
    """Each logged mean reward == mean of ATR over the recorded per-turn scores."""
    assert len(spy.steps) == 2 and len(logs) == 2
    n_scored = 0
    for step, log in zip(spy.steps, logs, strict=True):
        expected = []
        for ep in step:
            assert ep["n_turns"] <= max_turns and len(ep["turn_scores"]) == ep["n_turns"]
            r = trajectory_reward(
                ep["turn_scores"],
                ep["turn_errors"],
                final_ex=ep["final_ex"],
                format_ok=ep["format_ok"],
            )
            if "reward" in ep:
                assert ep["reward"] == pytest.approx(r)
            expected.append(r)
            n_scored += bool(ep["turn_scores"])
        assert log[reward_key] == pytest.approx(sum(expected) / len(expected), abs=1e-5)
    assert n_scored >= 1  # at least one rollout executed SQL, and its scores are in the reward
    return n_scored


class ScriptedSQLEnvironment(SQLEnvironment):
    """Drives its own episode at reset (a random model never calls tools): per-turn scores exist
    whatever the model writes, so the trainer's reward path can be checked cheaply."""

    def reset(self, **row):
        out = super().reset(**row)
        city = "paris" if "paris" in row["gold_sql"] else "rome"
        self.execute_sql(f"SELECT name FROM customers WHERE city = '{city}'")  # partial: 2/3
        if city == "paris":
            self.submit_answer(row["gold_sql"])
        else:
            self.execute_sql("SELECT nope FROM customers")  # an error, then no answer
        return out


def test_grpo_tool_protocol_reward_path_with_a_driven_environment(
    root, tmp_path, make_tiny_causal_lm
):
    from datasets import Dataset

    from papercore.testing.builders import build_causal_tokenizer

    tok = build_causal_tokenizer(chat_template=qwen_template())
    model = make_tiny_causal_lm("qwen2", tokenizer=tok)
    spy = Spy()
    cfg = grpo_cfg(tmp_path, "tools")
    cfg.grpo["max_completion_length"] = 16
    trainer = build_trainer(
        cfg,
        model=model,
        tokenizer=tok,
        train_dataset=Dataset.from_list(make_rows()),
        db_root=root,
        extra_reward_funcs=[spy],
        env_cls=ScriptedSQLEnvironment,
    )
    trainer.train()
    trainer._agentic_sql_env_factory.close()
    logs = [h for h in trainer.state.log_history if "rewards/ScriptedSQLEnvironment/mean" in h]
    n = check_reward_matches_turn_scores(spy, logs, "rewards/ScriptedSQLEnvironment/mean", 3)
    assert n == 4  # every rollout of both steps; n_turns never accumulates across batches
    for step in spy.steps:
        for ep in step:
            assert ep["turn_scores"] in ([pytest.approx(2 / 3), 1.0], [pytest.approx(2 / 3), 0.0])


@pytest.mark.slow
def test_grpo_tool_protocol_environment_factory(root, tmp_path, papercore_cache_dir):
    """A warm-started model really calls execute_sql / submit_answer through the chat template."""
    from papercore.models import load_model, load_tokenizer
    from papercore.testing.builders import build_causal_tokenizer

    rows = make_rows()
    factory = make_environment_factory(root, isolation="thread", max_turns=3)
    tpl = qwen_template()
    render_tok = build_causal_tokenizer(chat_template=tpl)
    pairs = trajectory_sft_pairs(rows, trajectories(), render_tok, factory, protocol="tools")
    assert '"name": "execute_sql"' in pairs[0][1] and pairs[0][1].endswith("<|im_end|>")
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
    from datasets import Dataset

    spy = Spy()
    trainer = build_trainer(
        grpo_cfg(tmp_path, "tools"),
        model=model,
        tokenizer=tok,
        train_dataset=Dataset.from_list(rows),
        db_root=root,
        extra_reward_funcs=[spy],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/SQLEnvironment/mean" in h]
    check_reward_matches_turn_scores(spy, logs, "rewards/SQLEnvironment/mean", 3)
    assert any(h["tools/call_frequency"] > 0 for h in logs)
    assert any(h.get("sql/turns_mean", 0) > 0 for h in logs)  # per-turn stats are logged
    # the reward is the trainer's (weights: binary EX 0, spy 0, environment 1)
    assert trainer.reward_weights.tolist() == [0.0, 0.0, 1.0]
    assert all(math.isfinite(h["loss"]) for h in logs)
    factory.close()


def test_grpo_text_protocol_rollout_func(root, tmp_path, papercore_cache_dir):
    from papercore.models import load_model, load_tokenizer
    from papercore.testing.builders import build_causal_tokenizer

    rows = make_rows()
    factory = make_environment_factory(root, isolation="thread", max_turns=3)
    pairs = trajectory_sft_pairs(rows, trajectories(), build_causal_tokenizer(), factory)
    assert pairs[0][1].startswith("<sql>") and pairs[1][1].startswith("<solution>")
    assert "<observation>" in pairs[1][0]  # the observation is context, never a target
    tok_kwargs = {"vocab_size": 1024, "extra_texts": [p + t for p, t in pairs]}
    sft = warm_start_sft(
        pairs, papercore_cache_dir, steps=60, batch_size=4, lr=5e-3, tokenizer_kwargs=tok_kwargs
    )
    tok, model = load_tokenizer(str(sft)), load_model(str(sft), dtype="float32")
    from datasets import Dataset

    spy = Spy()
    trainer = build_trainer(
        grpo_cfg(tmp_path, "text"),
        model=model,
        tokenizer=tok,
        train_dataset=Dataset.from_list(rows),
        db_root=root,
        extra_reward_funcs=[spy],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/atr_csmr/mean" in h]
    check_reward_matches_turn_scores(spy, logs, "rewards/atr_csmr/mean", 3)
    assert trainer.reward_weights.tolist() == [1.0, 0.0, 0.0]
    assert all(math.isfinite(h["loss"]) for h in logs)
    factory.close()


def test_dataset_without_gold_sql_fails_at_construction(root, tmp_path, tiny_tokenizer, tiny_llama):
    from datasets import Dataset

    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": "q"}], "db_id": "shop"}])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['gold_sql'\]"):
        build_trainer(
            grpo_cfg(tmp_path, "text"),
            model=tiny_llama,
            tokenizer=tiny_tokenizer,
            train_dataset=ds,
            db_root=root,
        )


def test_tools_protocol_needs_a_tool_template(root, tmp_path, tiny_llama):
    from datasets import Dataset

    from papercore.testing.builders import build_causal_tokenizer

    tok = build_causal_tokenizer(chat_template="{% for m in messages %}{{ m.content }}{% endfor %}")
    with pytest.raises(ValueError, match="protocol='text'"):
        build_trainer(
            grpo_cfg(tmp_path, "tools"),
            model=tiny_llama,
            tokenizer=tok,
            train_dataset=Dataset.from_list(make_rows()),
            db_root=root,
        )


def test_synthetic_data_prompts_follow_the_protocol(tmp_path):
    from agentic_sql.train import _load_dataset

    data = {"kind": "synthetic", "n_dbs": 1, "n_questions": 8, "split": "train"}
    cfg = TrainConfig(model="m", output_dir=str(tmp_path), protocol="tools", max_turns=4, data=data)
    ds, _root = _load_dataset(cfg)
    system = ds[0]["prompt"][0]["content"]
    assert "execute_sql" in system and "at most 4 turns" in system
    assert set(ds["split"]) == {"train"} and (tmp_path / "synthetic" / "shop").is_dir()
    text = TrainConfig(model="m", output_dir=str(tmp_path / "t"), protocol="text", data=data)
    assert "<solution>" in _load_dataset(text)[0][0]["prompt"][0]["content"]


def test_synthetic_data_trains_on_the_train_split_by_default(tmp_path):
    from agentic_sql.train import _load_dataset

    data = {"kind": "synthetic", "n_dbs": 1, "n_questions": 30}  # no `split:` key
    ds, _root = _load_dataset(TrainConfig(model="m", output_dir=str(tmp_path), data=data))
    assert len(ds) > 0 and set(ds["split"]) == {"train"}  # test questions stay held out
    everything = {**data, "split": "all"}
    full, _ = _load_dataset(TrainConfig(model="m", output_dir=str(tmp_path), data=everything))
    assert set(full["split"]) == {"train", "test"} and len(full) > len(ds)
    with pytest.raises(ValueError, match=r"data\.split must be"):
        _load_dataset(
            TrainConfig(model="m", output_dir=str(tmp_path), data={**data, "split": "dev"})
        )


def test_build_trainer_pre_runs_gold_once_and_drops_failing_rows(
    root, tmp_path, tiny_tokenizer, tiny_llama
):
    """Every distinct gold runs once when the trainer is built; a failing gold's rows are dropped (the
    default, counted) or raise; the reward functions share the environment's gold results."""
    import copy

    from datasets import Dataset

    from agentic_sql.errors import GoldQueryError

    # the trainer sets the tokenizer's pad token and may touch the model: never the session fixtures
    tiny_tokenizer, tiny_llama = copy.deepcopy(tiny_tokenizer), copy.deepcopy(tiny_llama)

    rows = [
        *make_rows(),
        {
            "prompt": [{"role": "user", "content": "broken"}],
            "db_id": "shop",
            "gold_sql": "SELECT nope FROM customers",
        },
    ]
    trainer = build_trainer(
        grpo_cfg(tmp_path, "text"),
        model=tiny_llama,
        tokenizer=tiny_tokenizer,
        train_dataset=Dataset.from_list(rows),
        db_root=root,
    )
    factory = trainer._agentic_sql_env_factory
    assert len(trainer.train_dataset) == len(rows) - 1
    assert len(factory.gold_failures()) == 1
    assert len(factory.gold_cache._pinned) >= len(rows) - 1  # pre-run results stay in memory
    factory.close()
    cfg = grpo_cfg(tmp_path, "text")
    cfg.on_gold_failure = "raise"
    with pytest.raises(GoldQueryError):
        build_trainer(
            cfg,
            model=tiny_llama,
            tokenizer=tiny_tokenizer,
            train_dataset=Dataset.from_list(rows),
            db_root=root,
        )
    with pytest.raises(ValueError, match="on_gold_failure must be"):
        TrainConfig(model="m", on_gold_failure="ignore")
