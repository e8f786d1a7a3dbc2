"""A 2-step TRL GRPO run with scripted rollouts logs per-head rewards and the hand-computed weighted mean."""

from __future__ import annotations

import pytest

from ts_guard import GuardInput, Step, ToolCall, steps_to_dataset, train_grpo
from ts_guard.data import GuardSample, StepLabel

TOOLS = [
    {"name": "send_money", "description": "send money"},
    {"name": "read_file", "description": "read a file"},
]


def _tags(mur: str, pi: str, r: str, close: str = "<\\") -> str:
    return (
        f"<Malicious_User_Request>{mur}{close}Malicious_User_Request>"
        f"<Being_Attacked>{pi}{close}Being_Attacked><Harmfulness_Rating>{r}{close}Harmfulness_Rating>"
    )


# completion k of every group: heads (mur, pi, rating)
SCRIPT = [
    _tags("no", "yes", "1.0"),
    _tags("yes", "no", "0.5"),
    "no idea",
    _tags("no", "yes", "1.0", close="</"),
]
# gold labels of the four prompts (mur, pi, rating) and, by hand, each completion's head scores
GOLD = {
    "a": (False, True, 1.0),
    "b": (False, False, 0.0),
    "c": (True, True, 0.5),
    "d": (False, True, 0.5),
}
HEADS = {  # (pi, mur, rating) correctness of completions 0, 1 (2 and 3 do not parse officially: all 0)
    "a": [(1, 1, 1), (0, 0, 0)],
    "b": [(0, 1, 0), (1, 0, 0)],
    "c": [(1, 0, 0), (0, 1, 1)],
    "d": [(1, 1, 0), (0, 0, 1)],
}
W = (0.4, 0.4, 0.2)


def _dataset():
    samples = []
    for key, (mur, pi, r) in GOLD.items():
        hist = [Step(ToolCall("read_file", {"path": f"{key}.txt"}), f"contents of {key}")]
        x = GuardInput(f"request {key}", TOOLS, hist, ToolCall("send_money", {"to": key}))
        samples.append(GuardSample(x, StepLabel(mur, pi, r), source=key))
    return steps_to_dataset(samples, chat=False)


@pytest.mark.usefixtures("one_torch_thread")
def test_grpo_scripted_rollouts_log_weighted_reward(tmp_path, tiny_model_dir, tiny_tokenizer):
    """Tiny Llama from the papercore builders, saved to a directory (TRL rebuilds the reference model)."""
    tok, model_dir = tiny_tokenizer, tiny_model_dir
    ds = _dataset()
    key_of = {p: s for p, s in zip(ds["prompt"], ds["source"], strict=True)}
    calls: list[list[str]] = []

    def rollout_func(prompts, trainer):
        calls.append([key_of[p] for p in prompts])
        G = trainer.num_generations
        prompt_ids = [tok(p)["input_ids"] for p in prompts]
        completion_ids = [
            tok(SCRIPT[i % G])["input_ids"] + [tok.eos_token_id] for i in range(len(prompts))
        ]
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": [[0.0] * len(c) for c in completion_ids],
        }

    trainer = train_grpo(
        model_dir,
        ds,
        output_dir=tmp_path / "out",
        weights=W,
        rollout_func=rollout_func,
        tokenizer=tok,
        real_scale=False,
        num_generations=4,
        per_device_train_batch_size=8,
        max_steps=2,
        logging_steps=1,
        max_completion_length=64,
        learning_rate=1e-5,
        seed=0,
        shuffle_dataset=False,
    )
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(calls) == 2 and len(logs) == 2
    for keys, log in zip(calls, logs, strict=True):
        assert len(keys) == 8 and all(keys[i] == keys[i - i % 4] for i in range(8))  # groups of 4
        per_head = [[0.0] * 3 for _ in keys]
        for i, k in enumerate(keys):
            if i % 4 < 2:
                per_head[i] = list(HEADS[k][i % 4])
        weighted = [sum(w * h for w, h in zip(W, ph, strict=False)) for ph in per_head]
        assert log["reward"] == pytest.approx(sum(weighted) / 8, abs=1e-6)
        for j, name in enumerate(("pi_reward", "mur_reward", "rating_reward")):
            assert log[f"rewards/{name}/mean"] == pytest.approx(
                sum(ph[j] for ph in per_head) / 8, abs=1e-6
            )
    assert (tmp_path / "out" / "config.json").exists()
