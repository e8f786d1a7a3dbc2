"""Done-when: SBM SFT labels cover only aux tokens; Best-of-N builds the SFT data."""

import pytest

from srm_reward import BestOfNSelector, SideBranchModel, SideBranchTrainer, build_aux_dataset
from srm_reward.errors import EmptyAuxDatasetError
from srm_reward.synthetic import KBEntityBranch, factcheck_judge, noisy_factcheck_teacher


def test_sft_labels_cover_only_aux_tokens(world, word_tok, tmp_path, one_torch_thread):
    from papercore.testing.builders import tiny_causal_lm

    seeds = [
        {"prompt": p["prompt"], "response": p["rejected"]}
        for p in world.pairs(world.train_entities[:10], 1, 0)
    ]
    sel = BestOfNSelector(n=4, judge=factcheck_judge(world), min_score=0.5)
    ent = KBEntityBranch(world)
    ds, stats = build_aux_dataset(
        seeds,
        noisy_factcheck_teacher(world, 0.5),
        sel,
        "factcheck",
        context_fn=lambda p, r: ent(p, r),
        return_stats=True,
    )
    assert stats.kept + stats.skipped == len(seeds) and stats.kept == len(ds)
    assert all(c.strip() in ("supported", "contradicted") for c in ds["completion"])
    assert "Evidence: " + ent(seeds[0]["prompt"], "") in ds["prompt"][0]

    tr = SideBranchTrainer(
        "factcheck",
        tiny_causal_lm("llama", tokenizer=word_tok),
        word_tok,
        ds,
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
    )
    row = tr.trainer.train_dataset[0]
    batch = tr.trainer.data_collator([row])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    labelled = [int(t) for t, lab in zip(ids, labels, strict=True) if lab != -100]
    text = word_tok.decode(labelled)
    assert text == ds["completion"][0] + word_tok.eos_token
    first = next(i for i, lab in enumerate(labels) if lab != -100)
    assert (
        word_tok.decode(ids[:first]) == ds["prompt"][0]
    )  # everything before the aux span is unlabelled
    branch = tr.train()
    assert (
        isinstance(branch, SideBranchModel)
        and branch.kind == "lora"
        and branch.adapter == "factcheck"
    )
    assert len(branch.generate([seeds[0]["prompt"]], [seeds[0]["response"]])) == 1


def test_best_of_n_argmax_and_min_score():
    judge = lambda p, r, c, d: {"a": 0.1, "b": 0.9, "c": 0.5}[c]  # noqa: E731
    assert BestOfNSelector(3, judge)("p", "r", ["a", "b", "c"]) == ("b", 0.9)
    assert BestOfNSelector(3, judge, min_score=0.95)("p", "r", ["a", "b", "c"]) == (None, 0.9)
    with pytest.raises(EmptyAuxDatasetError, match=r"min_score=2\.0"):
        build_aux_dataset(
            [{"prompt": "p", "response": "r"}],
            lambda p, r, n, s: ["a", "b"],
            BestOfNSelector(2, judge, min_score=2.0),
            "style",
        )
