"""The tiny recall-model trainer: induction warm-up batches, length schedule, checkpoint + resume."""

from __future__ import annotations

import json

import torch

from structkv.synthetic.tasks import RecallVocab
from structkv.synthetic.train import TrainConfig, _schedule, copy_batch, train


def test_copy_batch_supervises_only_the_determined_part_of_the_repeat():
    ids, labels = copy_batch(3, 5, torch.Generator().manual_seed(0), RecallVocab(4, 4, 4))
    assert ids.shape == labels.shape == (3, 11)
    assert (ids[:, 0] == 0).all() and torch.equal(ids[:, 1:6], ids[:, 6:])
    # position t predicts t + 1: positions 6..9 predict the repeat's 2nd..5th tokens, nothing else
    assert torch.equal(labels[:, 6:10], ids[:, 7:11])
    assert (labels[:, :6] == -100).all() and (labels[:, 10] == -100).all()


def test_schedule_cycles_lengths_or_follows_the_curriculum():
    cyc = TrainConfig(lengths="64,128,256", max_pairs=8)
    assert [_schedule(cyc, s) for s in range(4)] == [(64, 8), (128, 8), (256, 8), (64, 8)]
    cur = TrainConfig(min_len=32, max_len=96, min_pairs=2, max_pairs=6, curriculum_steps=100)
    assert _schedule(cur, 0) == (32, 2)
    assert _schedule(cur, 100) == (96, 6)


def test_train_checkpoints_and_resumes(tmp_path):
    cfg = TrainConfig(
        layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32, n_keys=4, n_values=4,
        n_filler=4, steps=4, batch_size=2, lengths="12,16", copy_steps=2, copy_len=4,
        min_pairs=2, max_pairs=2, eval_every=2, eval_len=16, eval_samples=4,
    )  # fmt: skip
    first = train(TrainConfig(**{**cfg.__dict__, "steps": 2}), tmp_path)
    assert first["steps"] == 2 and (tmp_path / "ckpt.pt").exists()
    resumed = train(cfg, tmp_path)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert resumed["steps"] == 4 and [h["step"] for h in hist] == [2, 4]
    assert (tmp_path / "model" / "config.json").exists()


def test_grow_from_a_shallower_model_computes_the_same_function():
    from structkv.synthetic.train import build_model, grow_from

    small = build_model(
        TrainConfig(layers=2, hidden=16, heads=2, kv_heads=1, intermediate=32)
    ).eval()
    big = build_model(
        TrainConfig(layers=4, hidden=16, heads=2, kv_heads=1, intermediate=32, seed=1)
    ).eval()
    ids = torch.randint(0, 100, (2, 20))
    assert not torch.allclose(small(ids).logits, big(ids).logits)
    grow_from(big, small, [0, None, None, 1])
    torch.testing.assert_close(big(ids).logits, small(ids).logits, atol=1e-5, rtol=1e-5)
    assert big.model.layers[1].self_attn.o_proj.weight.abs().sum() == 0
