import numpy as np
import pandas as pd
import pytest
import torch

from ilp_diag import LossTrajectoryCallback, sft_tokenize, teacher_forced_nll, trajectory_summary
from ilp_diag.errors import TokenizerMismatchError
from ilp_diag.nll import check_same_tokenizer, token_nll


def _sft_trainer(model, tok, recs):
    from trl import SFTConfig, SFTTrainer

    from ilp_diag.sft import records_dataset
    from papercore.trainer_args import training_args

    args = training_args(
        SFTConfig,
        output_dir="/tmp/ilp-test-sft",
        per_device_train_batch_size=1,
        max_length=None,
        completion_only_loss=True,
        report_to="none",
    )
    return SFTTrainer(
        model=model, args=args, train_dataset=records_dataset(recs), processing_class=tok
    )


def test_probe_nll_equals_trainer_loss(world, world_tok, make_model, one_torch_thread):
    recs = world.records[:10]
    model = make_model(1)
    trainer = _sft_trainer(model, world_tok, recs)
    ds = trainer.train_dataset
    ours = teacher_forced_nll(model, world_tok, recs, batch_size=4)  # padded batches
    model.eval()
    for j, r in enumerate(recs):
        row = ds[j]
        assert row["idx"] == r.idx
        batch = trainer.data_collator([{k: row[k] for k in ("input_ids", "labels")}])
        with torch.no_grad():
            loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss.item()
        assert abs(loss - ours[j]) < 1e-5, (r.idx, loss, ours[j])
        ids, mask = sft_tokenize(world_tok, r.prompt, r.target)
        assert ids == row["input_ids"] and mask == [int(x != -100) for x in row["labels"]]


def test_nll_matches_manual_cross_entropy(world, world_tok, make_model):
    r = world.records[0]
    model = make_model(2)
    ids, mask = sft_tokenize(world_tok, r.prompt, r.target)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    lp = torch.log_softmax(logits[:-1], -1)
    tok_nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    m = torch.tensor(mask[1:], dtype=torch.bool)
    res = token_nll(model, world_tok, [r.prompt], [r.target])
    assert res.mean[0] == pytest.approx(tok_nll[m].mean().item(), abs=1e-5)
    assert res.sum[0] == pytest.approx(tok_nll[m].sum().item(), abs=1e-4)
    assert res.n_tokens[0] == m.sum().item() == 3  # " ", the value word, EOS
    assert 0 < res.gold_prob[0] < 1


def test_callback_indices_survive_shuffling(world, world_tok, make_model, one_torch_thread):
    from ilp_diag import sft_train

    recs = world.records[:24]
    probe = list(
        reversed(recs)
    )  # probe order differs from the data order, which the trainer shuffles
    model = make_model(3).train()
    cb = LossTrajectoryCallback(probe, world_tok, every_k_steps=2, batch_size=5)
    sft_train(
        model,
        world_tok,
        recs,
        epochs=2,
        lr=3e-3,
        batch_size=4,
        gradient_accumulation_steps=2,
        seed=7,
        callbacks=[cb],
    )
    log = cb.to_frame()
    steps = sorted(log.step.unique())
    assert steps[0] == 0 and len(steps) >= 4
    assert (
        log.groupby("step").idx.apply(lambda s: sorted(s.tolist()))
        == [sorted(r.idx for r in recs)] * len(steps)
    ).all()
    final = log[log.step == log.step.max()].set_index("idx")["loss"]
    direct = pd.Series(teacher_forced_nll(model, world_tok, recs), index=[r.idx for r in recs])
    np.testing.assert_allclose(final.loc[direct.index].to_numpy(), direct.to_numpy(), atol=1e-5)
    first = log[log.step == 0].set_index("idx")["loss"]
    assert (final < first).mean() > 0.8  # training lowered the probe losses


def test_trajectory_summary_forgetting_and_slope():
    rows = []
    # idx 0: learned then forgotten; idx 1: loss still going down at the end
    for s, (l0, c0, l1) in enumerate(
        [(2.0, False, 3.0), (0.1, True, 2.5), (0.05, True, 2.0), (1.5, False, 1.0)]
    ):
        rows.append({"step": s * 10, "idx": 0, "loss": l0, "gold_prob": np.exp(-l0), "correct": c0})
        rows.append(
            {"step": s * 10, "idx": 1, "loss": l1, "gold_prob": np.exp(-l1), "correct": False}
        )
    t = trajectory_summary(pd.DataFrame(rows)).set_index("idx")
    assert (
        t.loc[0, "forget_events"] == 1
        and t.loc[0, "ever_correct"]
        and not t.loc[0, "final_correct"]
    )
    assert t.loc[0, "min_loss_step"] == 20
    assert t.loc[1, "loss_slope"] < 0 and t.loc[0, "loss_slope"] > 0
    assert t.loc[1, "forget_events"] == 0
    assert t.loc[0, "variability"] > t.loc[1, "variability"] * 0.5


def test_tokenizer_mismatch_raises(world_tok, tiny_tokenizer):
    check_same_tokenizer(world_tok, world_tok)
    with pytest.raises(TokenizerMismatchError, match="differ"):
        check_same_tokenizer(world_tok, tiny_tokenizer)
    assert isinstance(TokenizerMismatchError("x"), ValueError)
