"""Text-protocol rollouts: observation masking, per-turn scores as extra fields, limits, any tokenizer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agentic_sql.atr import trajectory_reward
from agentic_sql.env import make_environment_factory
from agentic_sql.rewards import atr_reward, binary_ex_reward
from agentic_sql.rollout import make_sql_rollout_func, observation_text, run_text_episodes
from papercore.generation import Completion

GOLD = "SELECT name, city FROM customers WHERE age > 30"
PARTIAL = "SELECT name FROM customers WHERE age > 30"


@pytest.fixture(scope="module")
def factory(tmp_path_factory, make_shop_db):
    root = make_shop_db(tmp_path_factory.mktemp("dbs"))
    f = make_environment_factory(root, isolation="thread", max_turns=3)
    yield f
    f.close()


class ScriptedBackend:
    """A papercore-style backend replaying fixed turns per episode (keyed by the question)."""

    name = "scripted"

    def __init__(self, tok, scripts: dict[str, list[str]], eos_after: set[str] = frozenset()):
        self.tok, self.scripts, self.eos_after = tok, scripts, eos_after
        self.calls: dict[str, int] = {}
        self.configs = []

    def generate(self, prompts, config):
        self.configs.append(config)
        out, seen = [], set()
        for p in prompts:
            key = next(k for k in self.scripts if f"Q:{k}|" in p)
            if key not in seen:  # duplicates of one prompt advance in lockstep
                seen.add(key)
                self.calls[key] = self.calls.get(key, 0) + 1
            i = self.calls[key] - 1
            text = self.scripts[key][i]
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if key in self.eos_after:
                ids = [*ids, self.tok.eos_token_id]
            out.append([Completion(text=text, token_ids=ids, logprobs=[-0.5] * len(ids))])
        return out


def rows_for(keys):
    return [
        {"prompt": [{"role": "user", "content": f"Q:{k}|"}], "db_id": "shop", "gold_sql": GOLD}
        for k in keys
    ]


def play(tiny_tokenizer, factory, scripts, **kw):
    gen = ScriptedBackend(tiny_tokenizer, scripts, kw.pop("eos_after", set()))
    rows = rows_for(scripts)
    traces = run_text_episodes(
        gen, tiny_tokenizer, [r["prompt"] for r in rows], rows, factory, **kw
    )
    return traces, gen, rows


def test_observation_tokens_are_masked_and_model_tokens_kept(tiny_tokenizer, factory):
    scripts = {"a": [f"<think>look</think><sql>{PARTIAL}</sql>", f"<solution>{GOLD}</solution>"]}
    (t,), _, _ = play(tiny_tokenizer, factory, scripts, max_turns=3)
    tok = tiny_tokenizer
    assert len(t.completion_ids) == len(t.env_mask) == len(t.logprobs)
    model_ids = [i for i, m in zip(t.completion_ids, t.env_mask, strict=False) if m == 1]
    env_ids = [i for i, m in zip(t.completion_ids, t.env_mask, strict=False) if m == 0]
    assert tok.decode(model_ids) == "".join(scripts["a"])
    fresh = factory()
    fresh.reset(db_id="shop", gold_sql=GOLD)
    obs = observation_text(fresh.execute_sql(PARTIAL))
    assert tok.decode(env_ids[:-1]) == obs  # the observation, then EOS closing the sequence
    assert env_ids[-1] == tok.eos_token_id
    assert all(lp == 0.0 for lp, m in zip(t.logprobs, t.env_mask, strict=False) if m == 0)
    assert all(lp == -0.5 for lp, m in zip(t.logprobs, t.env_mask, strict=False) if m == 1)
    assert t.env.turn_scores == [pytest.approx(2 / 3), 1.0] and t.env.final_ex and t.env.format_ok


def test_rollout_extras_carry_per_turn_scores_to_the_reward(tiny_tokenizer, factory):
    from agentic_sql.rollout import traces_to_rollout

    scripts = {
        "good": [f"<solution>{GOLD}</solution>"],
        "explore": [f"<sql>{PARTIAL}</sql>", f"<solution>{GOLD}</solution>"],
        "regress": [f"<sql>{GOLD}</sql>", f"<solution>{PARTIAL}</solution>"],
        "noanswer": ["I do not know."],
    }
    traces, _, rows = play(tiny_tokenizer, factory, scripts, max_turns=3)
    out = traces_to_rollout(traces)
    assert set(out) >= {"prompt_ids", "completion_ids", "logprobs", "env_mask", "turn_scores"}
    assert out["turn_scores"] == [
        [1.0],
        [pytest.approx(2 / 3), 1.0],
        [1.0, pytest.approx(2 / 3)],
        [],
    ]
    assert out["format_ok"] == [True, True, True, False]
    extras = {
        k: v
        for k, v in out.items()
        if k not in ("prompt_ids", "completion_ids", "logprobs", "env_mask")
    }
    texts = [t.text for t in traces]
    r = atr_reward(texts, [r["db_id"] for r in rows], [r["gold_sql"] for r in rows], **extras)
    assert r == [pytest.approx(t.env.get_reward()) for t in traces]
    assert r[0] == pytest.approx(trajectory_reward([1.0], final_ex=True))
    assert r[1] == pytest.approx(trajectory_reward([2 / 3, 1.0], final_ex=True))
    assert r[0] > r[1] > r[3] and r[1] > r[2]
    assert binary_ex_reward(texts, ["shop"] * 4, [GOLD] * 4, **extras) == [1.0, 1.0, 0.0, 0.0]


def test_turn_limit_and_no_answer_is_a_format_failure(tiny_tokenizer, factory):
    scripts = {"loop": [f"<sql>{PARTIAL}</sql>"] * 5}
    (t,), gen, _ = play(tiny_tokenizer, factory, scripts, max_turns=3)
    assert gen.calls["loop"] == 3 and t.env.n_turns == 3
    assert not t.env.format_ok and t.env.get_reward() < 0
    assert t.completion_ids[-1] == tiny_tokenizer.eos_token_id


@pytest.mark.parametrize(
    "turn",
    [
        "<sql>SELECT <solution>1</sql>",
        "</solution>",
        f"<solution>{GOLD}</solution> and more text",
        "<sql>SELECT 1",
    ],
)
def test_malformed_turns_are_format_failures(tiny_tokenizer, factory, turn):
    (t,), _, _ = play(
        tiny_tokenizer, factory, {"m": [turn, f"<solution>{GOLD}</solution>"]}, max_turns=3
    )
    assert not t.env.format_ok
    assert t.env.get_reward() < trajectory_reward([1.0], final_ex=True) - 0.5


def test_eos_without_action_ends_the_episode(tiny_tokenizer, factory):
    (t,), gen, _ = play(
        tiny_tokenizer, factory, {"e": ["I give up", "x"]}, max_turns=3, eos_after={"e"}
    )
    assert gen.calls["e"] == 1 and t.env.n_turns == 0 and not t.env.format_ok
    assert t.completion_ids[-1] == tiny_tokenizer.eos_token_id and t.env_mask[-1] == 1


def test_eos_after_a_closing_tag_is_padding_not_a_model_token(tiny_tokenizer, factory):
    """Rows stopped by a stop string are padded with pad (= eos here) inside a batch."""
    scripts = {"p": [f"<sql>{PARTIAL}</sql>", f"<solution>{GOLD}</solution>"]}
    (t,), gen, _ = play(tiny_tokenizer, factory, scripts, max_turns=3, eos_after={"p"})
    assert gen.calls["p"] == 2 and t.env.final_ex and t.env.format_ok
    model_ids = [i for i, m in zip(t.completion_ids, t.env_mask, strict=True) if m == 1]
    assert tiny_tokenizer.eos_token_id not in model_ids


def test_completion_budget_is_respected(tiny_tokenizer, factory):
    scripts = {
        "long": [f"<sql>{PARTIAL}</sql>", f"<sql>{PARTIAL}</sql>", f"<solution>{GOLD}</solution>"]
    }
    (t,), gen, _ = play(tiny_tokenizer, factory, scripts, max_turns=3, max_completion_length=40)
    assert len(t.completion_ids) <= 40 and len(t.env_mask) == len(t.completion_ids)
    assert all(c.max_new_tokens <= 40 for c in gen.configs)


def test_real_transformers_backend_with_a_plain_string_prompt(tiny_llama, tiny_tokenizer, factory):
    from papercore.generation import make_backend

    gen = make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer)
    rows = rows_for(["x", "y"])
    traces = run_text_episodes(
        gen,
        tiny_tokenizer,
        ["Question: list names.\n", "Question: count.\n"],  # strings: no chat template needed
        rows,
        factory,
        max_turns=2,
        max_new_tokens_per_turn=12,
        temperature=1.0,
        seed=0,
    )
    for t in traces:
        assert 0 < len(t.completion_ids) == len(t.env_mask) == len(t.logprobs)
        assert sum(t.env_mask) >= 1 and all(lp <= 0 for lp in t.logprobs)
        assert t.finished


def test_make_sql_rollout_func_with_a_trainer(tiny_llama, tiny_tokenizer, factory):
    scripts = {
        "a": [f"<sql>{PARTIAL}</sql>", f"<solution>{GOLD}</solution>"],
        "b": [f"<solution>{GOLD}</solution>"],
    }
    rows = rows_for(scripts)
    trainer = SimpleNamespace(
        args=SimpleNamespace(max_completion_length=256, temperature=1.0, top_p=1.0, top_k=0),
        processing_class=tiny_tokenizer,
        model=tiny_llama,
        train_dataset=rows,
        eval_dataset=None,
        accelerator=None,
    )
    modes = []

    class ModeRecordingBackend(ScriptedBackend):
        def generate(self, prompts, config):
            modes.append(tiny_llama.training)
            return super().generate(prompts, config)

    gen = ModeRecordingBackend(tiny_tokenizer, scripts)
    rollout = make_sql_rollout_func(factory, max_turns=3, generator=gen)
    prompts = [rows[0]["prompt"], rows[0]["prompt"], rows[1]["prompt"], rows[1]["prompt"]]
    was_training = tiny_llama.training
    tiny_llama.train()  # as inside GRPOTrainer.train
    try:
        out = rollout(prompts, trainer)
        assert modes and not any(modes)  # generation ran in eval mode ...
        assert tiny_llama.training  # ... and train mode was restored afterwards
        tiny_llama.eval()
        again = make_sql_rollout_func(
            factory, max_turns=3, generator=ModeRecordingBackend(tiny_tokenizer, scripts)
        )
        again(prompts[:1], trainer)
        assert not tiny_llama.training  # eval mode is restored as eval mode
    finally:
        tiny_llama.train(was_training)
    assert len(out["completion_ids"]) == 4 and len(out["prompt_ids"]) == 4
    assert out["turn_scores"][0] == [pytest.approx(2 / 3), 1.0]
    assert out["turn_scores"][2] == [1.0] and out["final_ex"] == [True] * 4
    with pytest.raises(ValueError, match="not in the trainer's datasets"):
        rollout([[{"role": "user", "content": "Q:zzz|"}]], trainer)
    with pytest.raises(ValueError, match="backend"):
        make_sql_rollout_func(factory, backend="tpu")
    with pytest.raises(ValueError, match="gold_sql"):
        make_sql_rollout_func(factory, rows=[{"prompt": "x", "db_id": "shop"}])


def test_rows_with_the_same_prompt_and_different_gold_are_refused(factory):
    rows = rows_for(["a", "b"])
    same_prompt = {**rows[0], "gold_sql": PARTIAL}
    with pytest.raises(ValueError, match="same prompt but different tasks"):
        make_sql_rollout_func(factory, rows=[*rows, same_prompt])
    other_db = {**rows[0], "db_id": "elsewhere"}
    with pytest.raises(ValueError, match="same prompt but different tasks"):
        make_sql_rollout_func(factory, rows=[rows[0], other_db])
    make_sql_rollout_func(factory, rows=[*rows, dict(rows[0])])  # an exact duplicate is fine


@pytest.mark.parametrize(
    "turn",
    [
        f"<solution><solution>{GOLD}</solution>",  # nested opening
        f"<sql>{PARTIAL}<sql>{PARTIAL}</sql>",
        f"<sql><think>look</think>{PARTIAL}</sql>",  # <think> inside a block
        f"<solution>{GOLD}<think>sure</think></solution>",
        f"<solution>{GOLD}</think></solution>",
    ],
)
def test_rollout_and_rewards_apply_the_same_format_rules(tiny_tokenizer, factory, turn):
    """A turn the rewards' parser rejects is a format failure in the rollout too."""
    from agentic_sql.protocol import parse_completion, parse_turn

    assert parse_turn(turn) is None
    answer = turn if "<solution>" in turn else f"{turn}<solution>{GOLD}</solution>"
    assert not parse_completion(answer).format_ok
    (t,), _, _ = play(
        tiny_tokenizer, factory, {"m": [turn, f"<solution>{GOLD}</solution>"]}, max_turns=3
    )
    assert not t.env.format_ok
    assert t.env.get_reward() < trajectory_reward([1.0], final_ex=True) - 0.5


@pytest.mark.parametrize(
    "turn, expected",
    [
        (f"<think>look</think><sql>{PARTIAL}</sql>", ("sql", PARTIAL)),
        (f"<solution> {GOLD} </solution>", ("solution", GOLD)),
        ("<observation><sql>x</sql></observation><sql>SELECT 1</sql>", ("sql", "SELECT 1")),
        ("</sql>", None),
        ("<sql>SELECT <solution>1</sql>", None),
    ],
)
def test_parse_turn(turn, expected):
    from agentic_sql.protocol import parse_completion, parse_turn

    assert parse_turn(turn) == expected
    if expected is not None and expected[0] == "solution":
        p = parse_completion(turn)
        assert p.format_ok and p.final_sql == expected[1]


def test_rollout_func_hf_batch_size_is_configurable_and_checked():
    from types import SimpleNamespace

    from agentic_sql.rollout import _trainer_backend, make_sql_rollout_func

    with pytest.raises(ValueError, match="hf_batch_size must be >= 1"):
        make_sql_rollout_func(lambda: None, hf_batch_size=0)
    from papercore.testing.builders import build_causal_tokenizer, tiny_causal_lm

    tok = build_causal_tokenizer()
    trainer = SimpleNamespace(
        use_vllm=False, processing_class=tok, model=tiny_causal_lm("llama", tokenizer=tok)
    )
    assert _trainer_backend(trainer, "hf", 7).batch_size == 7
