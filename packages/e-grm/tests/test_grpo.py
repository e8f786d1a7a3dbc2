"""``as_reward_fn()`` inside a real 2-step TRL GRPOTrainer on a tiny model (model passed as a directory)."""

from __future__ import annotations

import math
import os
import pickle

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

trl = pytest.importorskip("trl")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


def test_reward_fn_in_grpo_trainer(tiny_model_dir, tmp_path):
    from datasets import Dataset

    from egrm_reward import EfficientGRM, EGRMConfig, make_training_args
    from papercore.generation import make_backend

    grm = EfficientGRM(
        make_backend("transformers", model=str(tiny_model_dir)),
        config=EGRMConfig(direct_max_new_tokens=4, cot_max_new_tokens=6, aggregation="vote"),
    )
    reward = grm.as_reward_fn()
    assert (
        pickle.loads(pickle.dumps(reward)).__name__ == "egrm_reward"
    )  # model and tokenizer included
    seen = []

    class Spy:
        """A weight-0 reward recording what E-GRM's reward returned for the same batch."""

        __name__ = "spy"

        def __call__(self, prompts, completions, **kw):
            seen.append(reward(prompts, completions))
            return [0.0] * len(completions)

    args = make_training_args(
        trl.GRPOConfig,
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        num_generations=2,
        per_device_train_batch_size=2,
        max_completion_length=6,
        learning_rate=1e-5,
        beta=0.0,
        logging_steps=1,
        reward_weights=[1.0, 0.0],
        disable_tqdm=True,
    )
    ds = Dataset.from_list([{"prompt": f"{a} + {a} ="} for a in range(4)])
    trainer = trl.GRPOTrainer(
        model=str(tiny_model_dir), reward_funcs=[reward, Spy()], args=args, train_dataset=ds
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert len(seen) == 2 and all(len(r) == 2 for r in seen)
    assert all(0.0 <= x <= 1.0 for r in seen for x in r)
    logs = [h for h in trainer.state.log_history if "rewards/egrm_reward/mean" in h]
    assert logs and all(math.isfinite(h["rewards/egrm_reward/mean"]) for h in logs)
    # GRPO asks once per distinct prompt per call (the reward and the spy each call the judge)
    assert len(reward.costs) == 2 * 2
