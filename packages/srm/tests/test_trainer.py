"""Done-when: rendered pairs train with RewardTrainer; score() equals the trainer's rewards; the trainer's loss
equals -logsigmoid(s_c - s_j).mean()."""

import torch

from srm_reward import SRMRewardTrainer, StructuralRewardModel


def _srm(rm_factory, word_tok, prog_branches, **kw):
    return StructuralRewardModel(rm_factory(0), word_tok, prog_branches, parallel="none", **kw)


def test_rendered_pairs_train_and_scores_match(
    world, word_tok, rm_factory, prog_branches, tmp_path, one_torch_thread
):
    srm = _srm(rm_factory, word_tok, prog_branches)
    pairs = world.pairs(world.train_entities[:12], 1, seed=0)
    trainer = SRMRewardTrainer.from_srm(
        srm,
        pairs,
        output_dir=str(tmp_path),
        branch_dropout=0.1,
        seed=0,
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
    )
    assert trainer.args.bf16 is False and trainer.dropped_pairs == 0
    assert trainer.args.max_length == srm.renderer.max_length
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert logs and all(h["dropped_pairs"] == 0 for h in logs)

    # the same pair through TRL's own dataset + collator + compute_loss, and through our score()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model.eval()
    with torch.no_grad():
        loss, out = trainer.compute_loss(model, dict(batch), return_outputs=True)
    r_c, r_j = torch.chunk(out.logits.squeeze(-1), 2)
    assert torch.allclose(loss, -torch.nn.functional.logsigmoid(r_c - r_j).mean(), atol=1e-6)

    enriched = srm.enrich_pairs(pairs[:4], branch_dropout=0.1, seed=0)
    ours = srm.score_texts([e["chosen"] for e in enriched] + [e["rejected"] for e in enriched])
    assert torch.allclose(torch.tensor(ours, dtype=torch.float32), torch.cat([r_c, r_j]), atol=1e-5)
    # score() on raw (prompt, response) equals the trainer's reward when no branch was dropped
    aux_dropped = ["UNAVAILABLE" in e["aux_chosen"] for e in enriched]
    for i, p in enumerate(pairs[:4]):
        if not aux_dropped[i]:
            s = srm.score([p["prompt"]], [p["chosen"]])[0]
            assert abs(s - float(r_c[i])) < 1e-5


def test_too_long_pairs_are_counted(world, word_tok, rm_factory, tmp_path):
    from datasets import Dataset

    from srm_reward.trainer import reward_config

    srm = _srm(rm_factory, word_tok, [])
    long = "red " * 300
    ds = Dataset.from_list(
        [{"chosen": "a lamp", "rejected": "a chair"}, {"chosen": long, "rejected": "x"}]
    )
    args = reward_config(str(tmp_path), max_length=64, max_steps=1)
    tr = SRMRewardTrainer(
        model=srm.reward_model, args=args, train_dataset=ds, processing_class=word_tok
    )
    assert tr.dropped_pairs == 1 and len(tr.train_dataset) == 1


def test_branch_dropout_is_paired_and_seeded(world, word_tok, rm_factory, prog_branches):
    srm = _srm(rm_factory, word_tok, prog_branches)
    pairs = world.pairs(world.train_entities[:20], 1, seed=1)
    a = srm.enrich_pairs(pairs, branch_dropout=0.5, seed=3)
    b = srm.enrich_pairs(pairs, branch_dropout=0.5, seed=3)
    assert a == b
    import json

    n_drop = 0
    for row in a:
        ac, ar = json.loads(row["aux_chosen"]), json.loads(row["aux_rejected"])
        for k in ac:
            assert (ac[k] == "UNAVAILABLE") == (ar[k] == "UNAVAILABLE")
            n_drop += ac[k] == "UNAVAILABLE"
    assert 0 < n_drop < 4 * len(pairs)
