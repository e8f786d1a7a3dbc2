"""Done-when: as_reward_fn() runs inside a 2-step GRPOTrainer on a tiny model, one float per completion."""

import math

from srm_reward import SideBranchModel, StructuralRewardModel
from srm_reward.experiment import tiny_reward_model
from srm_reward.model import SRMRewardFn
from srm_reward.synthetic import IntentBranch, StyleBranch


class RecordingRewardFn(SRMRewardFn):
    calls: list

    def __call__(self, prompts, completions, **kwargs):
        out = super().__call__(prompts, completions, **kwargs)
        self.calls.append((len(completions), out))
        return out


def test_reward_fn_inside_grpo(
    world, word_tok, make_tiny_causal_lm, tiny_tokenizer, tmp_path, one_torch_thread
):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from papercore.trainer_args import training_args

    srm = StructuralRewardModel(
        tiny_reward_model(word_tok, hidden_size=32),
        word_tok,
        [
            SideBranchModel("semantic", generate_fn=IntentBranch()),
            SideBranchModel("style", generate_fn=StyleBranch()),
        ],
        parallel="none",
    )
    fn = RecordingRewardFn(srm)
    fn.calls = []
    prompts = [world.query(n, "color", "list") for n in world.train_entities[:4]]
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])
    args = training_args(
        GRPOConfig,
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=8,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=make_tiny_causal_lm("llama"),
        reward_funcs=[fn],
        args=args,
        train_dataset=ds,
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    assert len(fn.calls) >= 2
    for n, out in fn.calls:
        assert len(out) == n and all(isinstance(v, float) and math.isfinite(v) for v in out)
    assert any("rewards/srm/mean" in h for h in trainer.state.log_history)
