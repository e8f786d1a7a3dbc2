"""Branches: one mixed-adapter batch equals per-adapter generation; cache; timeout; save/load."""

import threading
import time

import pytest

from srm_reward import BranchCache, Dimension, SideBranchModel, run_branches
from srm_reward.errors import (
    BranchUnavailableError,
    DuplicateDimensionError,
    SRMConfigError,
    UnknownDimensionError,
)


@pytest.fixture
def lora_setup(word_tok, tmp_path, one_torch_thread):
    import peft
    import torch

    from papercore.generation.hf import TransformersBackend
    from papercore.testing.builders import save_model_dir, tiny_causal_lm

    base = tiny_causal_lm("llama", tokenizer=word_tok, seed=0)
    base_dir = save_model_dir(base, word_tok, tmp_path / "base")
    paths = {}
    for k, name in enumerate(["factcheck", "style"]):
        torch.manual_seed(10 + k)
        m = peft.get_peft_model(
            tiny_causal_lm("llama", tokenizer=word_tok, seed=0),
            peft.LoraConfig(
                r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False
            ),
            adapter_name=name,
        )
        m.save_pretrained(str(tmp_path / "ad"), selected_adapters=[name])
        paths[name] = tmp_path / "ad" / name
    backend = TransformersBackend(base, word_tok, adapters={k: str(v) for k, v in paths.items()})
    return backend, base_dir, paths


def test_mixed_adapter_batch_equals_per_adapter(lora_setup, world):
    backend, _, _ = lora_setup
    fc = SideBranchModel.lora("factcheck", backend, "factcheck", max_new_tokens=6)
    st = SideBranchModel.lora("style", backend, "style", max_new_tokens=6)
    pairs = world.pairs(world.train_entities[:4], 1, seed=0)
    prompts = [p["prompt"] for p in pairs]
    responses = [p["chosen"] for p in pairs]
    calls = []
    orig = backend.generate

    def counting(prompts_, config=None, *, adapters=None):
        calls.append(list(adapters) if adapters else None)
        return orig(prompts_, config, adapters=adapters)

    backend.generate = counting
    mixed, stats = run_branches([fc, st], prompts, responses)
    assert len(calls) == 1 and set(calls[0]) == {"factcheck", "style"}  # one mixed batch
    backend.generate = orig
    assert mixed["factcheck"] == fc.generate(prompts, responses)
    assert mixed["style"] == st.generate(prompts, responses)
    # token for token, against one backend call per adapter
    for b in (fc, st):
        one = backend.generate(
            b.inputs(prompts, responses), b.sampling_config(), adapters=[b.adapter] * 4
        )
        both = backend.generate(
            fc.inputs(prompts, responses) + st.inputs(prompts, responses),
            fc.sampling_config(),
            adapters=["factcheck"] * 4 + ["style"] * 4,
        )
        off = 0 if b is fc else 4
        assert [c[0].token_ids for c in one] == [c[0].token_ids for c in both[off : off + 4]]
    assert mixed["factcheck"] != mixed["style"]  # the adapters really differ
    assert stats.decode_steps >= 1


def test_lora_branch_save_load_roundtrip(lora_setup, world, tmp_path):
    backend, base_dir, _ = lora_setup
    fc = SideBranchModel.lora("factcheck", backend, "factcheck", max_new_tokens=5)
    fc.save_pretrained(tmp_path / "branches" / "factcheck")
    assert (tmp_path / "branches" / "factcheck" / "adapter_config.json").is_file()
    again = SideBranchModel.from_pretrained(tmp_path / "branches" / "factcheck", base=str(base_dir))
    p = [world.query(world.train_entities[0], "color", "list")]
    assert again.generate(p, ["x"]) == fc.generate(p, ["x"])
    assert again.fingerprint == fc.fingerprint


def test_cache_keys_and_prompt_only_dims(world):
    calls = []

    def sem(p, r):
        calls.append((p, r))
        return "intent " + p.split()[0]

    b = SideBranchModel(Dimension("semantic", depends_on_response=False), generate_fn=sem)
    cache = BranchCache()
    out, _stats = run_branches([b], ["q1", "q1", "q2"], ["a", "b", "a"], cache=cache)
    assert out["semantic"] == ["intent q1", "intent q1", "intent q2"]
    assert len(calls) == 2 and len(cache) == 2  # prompt-only: one entry per prompt
    run_branches([b], ["q1"], ["zzz"], cache=cache)
    assert len(calls) == 2 and cache.hits >= 1


def test_disk_cache_roundtrip(tmp_path):
    b = SideBranchModel("style", generate_fn=lambda p, r: r.upper())
    c = BranchCache(tmp_path / "c.jsonl")
    run_branches([b], ["p"], ["r"], cache=c)
    assert (
        BranchCache(tmp_path / "c.jsonl").get(
            "style", b.fingerprint, __import__("srm_reward.cache").cache.pair_hash("p", "r")
        )
        == "R"
    )


def test_timeout_unavailable_and_strict():
    ev = threading.Event()

    def slow(p, r):
        ev.wait(2.0)
        return "late"

    fast = SideBranchModel("style", generate_fn=lambda p, r: "fits")
    sl = SideBranchModel("factcheck", generate_fn=slow)
    t0 = time.perf_counter()
    out, stats = run_branches([fast, sl], ["p"], ["r"], timeout_s=0.3)
    assert time.perf_counter() - t0 < 1.5
    assert out == {"style": ["fits"], "factcheck": ["UNAVAILABLE"]} and stats.unavailable == {
        "factcheck": 1
    }
    with pytest.raises(BranchUnavailableError, match="factcheck"):
        run_branches([fast, sl], ["p"], ["r"], timeout_s=0.3, strict=True)
    ev.set()

    def boom(p, r):
        raise RuntimeError("down")

    out, _ = run_branches(
        [SideBranchModel("quality", generate_fn=boom)], ["p"], ["r"], parallel="none"
    )
    assert out == {"quality": ["UNAVAILABLE"]}


def test_parallel_equals_serial(prog_branches, world):
    pairs = world.pairs(world.train_entities[:6], 1, seed=2)
    p, r = [x["prompt"] for x in pairs], [x["rejected"] for x in pairs]
    assert (
        run_branches(prog_branches, p, r, parallel="thread")[0]
        == run_branches(prog_branches, p, r, parallel="none")[0]
    )


def test_bad_branch_configs():
    with pytest.raises(UnknownDimensionError, match="nope"):
        SideBranchModel("nope", generate_fn=lambda p, r: "")
    with pytest.raises(DuplicateDimensionError):
        run_branches(
            [SideBranchModel("style", generate_fn=str), SideBranchModel("style", generate_fn=str)],
            [],
            [],
        )
    with pytest.raises(SRMConfigError, match="exactly one"):
        SideBranchModel("style")
    with pytest.raises(SRMConfigError):
        Dimension("bad name")
