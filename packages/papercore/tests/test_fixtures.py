import random

import pytest
import torch

from papercore.testing import CAUSAL_SPECIAL_TOKENS, CountingTask, build_causal_tokenizer


def test_tokenizer_round_trip_and_special_tokens(tiny_tokenizer):
    text = "Héllo wörld! SELECT name FROM users; 12345 <|im_end|>"
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text
    for t in CAUSAL_SPECIAL_TOKENS:
        assert len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) == 1
    assert tiny_tokenizer.pad_token == tiny_tokenizer.eos_token == "<|endoftext|>"


_TOKENIZER_HASH = (
    "import hashlib, json; from papercore.testing import build_causal_tokenizer; "
    "t = build_causal_tokenizer(vocab_size=400); "
    "state = json.loads(t.backend_tokenizer.to_str())['model']; "
    "print(hashlib.sha256(json.dumps([sorted(t.get_vocab().items()), state['merges']]).encode())"
    ".hexdigest())"
)


def test_causal_tokenizer_is_identical_across_processes():
    """The BPE vocabulary and merges do not depend on the process (hash seed, thread timing)."""
    import os
    import subprocess
    import sys

    hashes = set()
    for hash_seed in ("1", "2"):  # different set/dict iteration orders of strings
        env = os.environ | {"PYTHONHASHSEED": hash_seed}
        hashes.add(
            subprocess.run(
                [sys.executable, "-c", _TOKENIZER_HASH],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
        )
    assert len(hashes) == 1
    a = build_causal_tokenizer(vocab_size=400)
    b = build_causal_tokenizer(vocab_size=400, extra_texts=["zorblax quintrel"] * 40)
    assert len(a) == 400 and len(b) == 400 and a.get_vocab() != b.get_vocab()


def test_encoder_tokenizer_is_identical_across_processes():
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, json; from papercore.testing import build_encoder_tokenizer; "
        "v = build_encoder_tokenizer().get_vocab(); "
        "print(hashlib.sha256(json.dumps(sorted(v.items())).encode()).hexdigest())"
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ | {"PYTHONHASHSEED": hash_seed},
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(hashes) == 1


def test_encoder_tokenizer_learns_extra_texts():
    from papercore.testing import build_encoder_tokenizer

    base = build_encoder_tokenizer()
    tok = build_encoder_tokenizer(extra_texts=["zorblax quintrel"] * 40)
    assert "zorblax" not in base.get_vocab() and "zorblax" in tok.get_vocab()
    ids = tok("Zorblax and the comet")["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[:2] == ["[CLS]", "zorblax"]
    assert tok.decode(ids, skip_special_tokens=True) == "zorblax and the comet"


def test_chat_template_with_tools(tiny_tokenizer):
    msgs = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "42"},
    ]
    text = tiny_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
        '{"name": "f", "arguments": {"a": 1}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_tiny_causal_lms(make_tiny_causal_lm, tiny_tokenizer, arch, attn):
    model = make_tiny_causal_lm(arch, attn_implementation=attn)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert getattr(model.config, "sliding_window", None) is None
    assert model.config._attn_implementation == attn
    ids = tiny_tokenizer(["count: 1 2"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tiny_tokenizer))
    again = make_tiny_causal_lm(arch, attn_implementation=attn)  # same seed → same weights
    assert all(
        torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True)
    )


def test_tiny_bert(tiny_bert, tiny_encoder_tokenizer):
    enc = tiny_encoder_tokenizer(
        ["a query", "a longer document here"], return_tensors="pt", padding=True
    )
    assert enc["input_ids"][0, 0].item() == tiny_encoder_tokenizer.cls_token_id
    with torch.no_grad():
        h = tiny_bert(**enc).last_hidden_state
    assert h.shape[0] == 2 and h.shape[-1] == 64


def test_minilm_is_real(minilm_path):
    assert (minilm_path / "config.json").exists()


def test_trained_counting_lm_has_learned(trained_counting_lm):
    from papercore.generation import SamplingConfig, make_backend
    from papercore.models import load_model, load_tokenizer

    backend = make_backend(
        "transformers",
        model=load_model(trained_counting_lm),
        tokenizer=load_tokenizer(trained_counting_lm),
    )
    rng = random.Random(1234)
    task = CountingTask()
    examples = [task.sample(rng) for _ in range(40)]
    outs = backend.generate(
        [p for p, _ in examples], SamplingConfig(temperature=0, max_new_tokens=12)
    )
    acc = sum(o[0].text == a for o, (_, a) in zip(outs, examples, strict=True)) / len(examples)
    assert acc >= 0.9


def test_trained_lm_is_cached(trained_counting_lm, papercore_cache_dir):
    from papercore.testing import train_tiny_lm

    mtime = (trained_counting_lm / "config.json").stat().st_mtime
    again = train_tiny_lm(CountingTask(), cache_dir=papercore_cache_dir)
    assert again == trained_counting_lm and (again / "config.json").stat().st_mtime == mtime


def test_one_torch_thread_restores_the_count(one_torch_thread):
    import torch

    from papercore.seeding import torch_threads

    assert torch.get_num_threads() == 1
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="thread count must be ≥ 1"), torch_threads(0):
        pass


def test_model_fixtures_turn_the_hub_off(request, tiny_tokenizer):
    """Every model fixture depends on ``papercore_offline`` (not autouse: see test_plugin_opt_in)."""
    import os

    assert "papercore_offline" in request.fixturenames
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
