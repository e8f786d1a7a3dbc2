import sys

import pytest
import torch

from papercore.errors import BackendUnavailableError, UnknownBackendError
from papercore.generation import SamplingConfig, make_backend


@pytest.fixture(scope="module")
def backend(tiny_llama, tiny_tokenizer):
    return make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer, batch_size=2)


PROMPTS = ["count: 1 2 3", "SELECT name FROM", "The model reads"]


def test_n_completions_per_prompt(backend):
    outs = backend.generate(PROMPTS, SamplingConfig(n=3, max_new_tokens=6, seed=0))
    assert len(outs) == 3 and all(len(o) == 3 for o in outs)
    for group in outs:
        for c in group:
            assert 1 <= len(c.token_ids) <= 6
            assert c.finish_reason in ("stop", "length")
            assert c.text == backend.tokenizer.decode(
                c.token_ids[:-1] if c.finish_reason == "stop" else c.token_ids,
                skip_special_tokens=True,
            )


def test_seed_makes_sampling_reproducible(backend):
    cfg = SamplingConfig(n=4, max_new_tokens=8, temperature=1.0, seed=7)
    a = backend.generate(PROMPTS, cfg)
    b = backend.generate(PROMPTS, cfg)
    assert [[c.token_ids for c in g] for g in a] == [[c.token_ids for c in g] for g in b]
    samples = {tuple(c.token_ids) for c in a[0]}
    assert len(samples) > 1  # a random tiny model at T=1 does not repeat itself 4 times


def test_greedy_samples_are_identical(backend):
    outs = backend.generate(PROMPTS[:1], SamplingConfig(n=3, temperature=0, max_new_tokens=8))
    assert len({tuple(c.token_ids) for c in outs[0]}) == 1


def test_logprobs_equal_teacher_forced_forward(backend, tiny_llama, tiny_tokenizer):
    cfg = SamplingConfig(n=2, max_new_tokens=6, temperature=0.8, logprobs=True, seed=3)
    outs = backend.generate(PROMPTS[:2], cfg)
    for prompt, group in zip(PROMPTS[:2], outs, strict=True):
        p_ids = tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for c in group:
            assert len(c.logprobs) == len(c.token_ids)
            ids = torch.tensor([p_ids + c.token_ids])
            with torch.no_grad():
                logp = torch.log_softmax(tiny_llama(ids).logits[0, len(p_ids) - 1 : -1].float(), -1)
            ref = logp.gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
            assert torch.allclose(torch.tensor(c.logprobs), ref, atol=1e-4)


def test_stop_strings_cut_the_text(trained_counting_lm):
    from papercore.models import load_model, load_tokenizer

    b = make_backend(
        "transformers",
        model=load_model(trained_counting_lm),
        tokenizer=load_tokenizer(trained_counting_lm),
    )
    full = b.generate(["count: 10 11 12"], SamplingConfig(temperature=0, max_new_tokens=12))[0][0]
    assert full.text == " 13 14 15"
    cut = b.generate(
        ["count: 10 11 12"], SamplingConfig(temperature=0, max_new_tokens=12, stop=(" 15",))
    )[0][0]
    assert cut.text == " 13 14" and cut.finish_reason == "stop"


def test_chat_prompts_use_the_template(backend, tiny_tokenizer):
    msgs = [{"role": "user", "content": "hi"}]
    a = backend.generate([msgs], SamplingConfig(temperature=0, max_new_tokens=5))[0][0]
    rendered = tiny_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    b = backend.generate([rendered], SamplingConfig(temperature=0, max_new_tokens=5))[0][0]
    assert a.token_ids == b.token_ids


def test_bad_inputs(backend):
    with pytest.raises(TypeError, match="got a single string"):
        backend.generate("count: 1", SamplingConfig())
    with pytest.raises(TypeError, match="prompt 1 must be a string or a list"):
        backend.generate(["ok", 5], SamplingConfig())
    with pytest.raises(ValueError, match="n must be >= 1"):
        SamplingConfig(n=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplingConfig(temperature=-1)


def test_unknown_backend():
    with pytest.raises(
        UnknownBackendError,
        match=r"unknown generation backend 'tgi'; expected one of \['transformers', 'vllm', 'openai'\]",
    ):
        make_backend("tgi")


def test_vllm_not_installed_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'papercore\[vllm\]'"):
        make_backend("vllm", model="some/model")
    from papercore.generation.vllm import to_vllm_sampling_params

    with pytest.raises(BackendUnavailableError):
        to_vllm_sampling_params(SamplingConfig())
