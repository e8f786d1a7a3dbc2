"""The tiny recall-model trainer: induction warm-up batches, length schedule, checkpoint + resume."""

from __future__ import annotations

import json

import pytest
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


TINY = dict(
    layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32, n_keys=4, n_values=4,
    n_filler=4, steps=4, batch_size=2, lengths="12,16", copy_steps=2, copy_len=4,
    min_pairs=2, max_pairs=2, eval_every=2, eval_len=16, eval_samples=4,
)  # fmt: skip


def _weights(run_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(run_dir / "model").state_dict()


def test_train_checkpoints_and_resumes(tmp_path, monkeypatch):
    import structkv.synthetic.train as tr

    cfg = TrainConfig(**TINY)
    first = train(TrainConfig(**{**cfg.__dict__, "steps": 2}), tmp_path / "a")
    assert first["steps"] == 2 and (tmp_path / "a" / "ckpt.pt").exists()
    resumed = train(cfg, tmp_path / "a")
    hist = json.loads((tmp_path / "a" / "history.json").read_text())
    assert resumed["steps"] == 4 and [h["step"] for h in hist] == [2, 4]
    assert (tmp_path / "a" / "model" / "config.json").exists()

    # a run killed after its step-2 checkpoint and resumed ends with the weights of an
    # uninterrupted run of the same config (CPU training with a fixed seed is deterministic)
    straight = train(cfg, tmp_path / "straight")
    assert straight["steps"] == 4
    real_batch = tr.training_batch

    def killed_after_checkpoint(*a, **k):
        if (tmp_path / "killed" / "ckpt.pt").exists():
            raise KeyboardInterrupt  # the process dies during step 3
        return real_batch(*a, **k)

    monkeypatch.setattr(tr, "training_batch", killed_after_checkpoint)
    try:
        train(cfg, tmp_path / "killed")
        raise AssertionError("the run was not interrupted")
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(tr, "training_batch", real_batch)
    ckpt = torch.load(tmp_path / "killed" / "ckpt.pt", weights_only=False)
    assert ckpt["step"] == 2 and not (tmp_path / "killed" / "model").exists()
    again = train(cfg, tmp_path / "killed")
    assert again["steps"] == 4
    want, got = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert not torch.equal(ckpt["model"]["lm_head.weight"], got["lm_head.weight"])  # it trained on


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


SMALL = dict(hidden=16, heads=2, kv_heads=1, intermediate=32)


def test_grow_from_rejects_a_layer_map_naming_a_missing_source_layer():
    from structkv.synthetic.train import build_model, grow_from

    small = build_model(TrainConfig(layers=2, **SMALL))
    big = build_model(TrainConfig(layers=4, seed=1, **SMALL))
    before = {k: v.clone() for k, v in big.state_dict().items()}
    with pytest.raises(ValueError, match=r"layer_map\[3\] = 5.*2 layers"):
        grow_from(big, small, [0, None, None, 5])
    with pytest.raises(ValueError, match=r"layer_map\[0\] = -1"):
        grow_from(big, small, [-1, None, None, 1])
    with pytest.raises(ValueError, match=r"layer_map has 3 entries for 4 layers"):
        grow_from(big, small, [0, None, 1])
    assert all(torch.equal(v, before[k]) for k, v in big.state_dict().items())  # untouched


@pytest.mark.parametrize(
    ("changes", "name"),
    [({"hidden": 32}, "hidden_size"), ({"heads": 4}, "num_attention_heads"),
     ({"kv_heads": 2}, "num_key_value_heads"), ({"intermediate": 64}, "intermediate_size"),
     ({"n_keys": 8}, "vocab_size")],
)  # fmt: skip
def test_grow_from_names_a_config_mismatch(changes, name):
    from structkv.synthetic.train import build_model, grow_from

    small = build_model(TrainConfig(layers=2, **SMALL))
    big = build_model(TrainConfig(layers=4, **{**SMALL, **changes}))
    with pytest.raises(ValueError, match=rf"{name}: source \d+, target \d+"):
        grow_from(big, small, [0, None, None, 1])


@pytest.mark.parametrize(
    ("init_from", "layer_map", "msg"),
    [("src", "", "--init-from needs --layer-map"), ("", "0,-", "--layer-map needs --init-from"),
     ("src", "0,x,1", "entry 1 is 'x'"), ("src", "0,-", "2 entries for 3 layers")],
)  # fmt: skip
def test_train_names_a_missing_or_bad_layer_map(tmp_path, init_from, layer_map, msg):
    cfg = TrainConfig(**{**TINY, "layers": 3, "init_from": init_from, "layer_map": layer_map})
    with pytest.raises(ValueError, match=msg):
        train(cfg, tmp_path)


def test_train_grows_from_a_shallower_run(tmp_path, monkeypatch):
    import structkv.synthetic.train as tr
    from structkv.synthetic.train import build_model

    src_cfg = TrainConfig(**{**TINY, "layers": 2, "seed": 3})
    source = build_model(src_cfg).eval()
    source.save_pretrained(tmp_path / "src")
    grown = {}
    real_grow = tr.grow_from

    def spy(model, src, layer_map):
        out = real_grow(model, src, layer_map)
        grown["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        grown["map"] = layer_map
        return out

    monkeypatch.setattr(tr, "grow_from", spy)
    cfg = TrainConfig(
        **{
            **TINY,
            "layers": 3,
            "steps": 2,
            "init_from": str(tmp_path / "src"),
            "layer_map": "0, -,1",
        }
    )
    assert train(cfg, tmp_path / "run")["steps"] == 2
    assert grown["map"] == [0, None, 1]
    src = source.state_dict()
    at0 = grown["state"]
    for i, j in ((0, 0), (2, 1)):  # copied layers start as the source's
        for k, v in src.items():
            if k.startswith(f"model.layers.{j}."):
                assert torch.equal(at0[k.replace(f".{j}.", f".{i}.", 1)], v), k
    assert at0["model.layers.1.self_attn.o_proj.weight"].abs().sum() == 0  # the new layer: identity
    assert torch.equal(at0["model.embed_tokens.weight"], src["model.embed_tokens.weight"])
    step0 = build_model(TrainConfig(**{**TINY, "layers": 3})).eval()
    step0.load_state_dict(at0)
    ids = torch.randint(0, 12, (2, 10))
    torch.testing.assert_close(step0(ids).logits, source(ids).logits, atol=1e-5, rtol=1e-5)
    final = _weights(tmp_path / "run")
    assert len({k.split(".")[2] for k in final if k.startswith("model.layers.")}) == 3
    assert not torch.equal(final["lm_head.weight"], src["lm_head.weight"])  # and then trained
