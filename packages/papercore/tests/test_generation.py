import sys

import pytest
import torch

from papercore.errors import BackendUnavailableError, UnknownBackendError
from papercore.generation import SamplingConfig, make_backend


@pytest.fixture(scope="module")
def backend(tiny_llama, tiny_tokenizer):
    return make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer, batch_size=2)


PROMPTS = ["count: 1 2 3", "SELECT name FROM", "The model reads"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared CPU: one torch thread (more only spin-wait; 70x slower under load)."""
    from papercore.seeding import torch_threads

    with torch_threads(1):
        yield


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


def test_greedy_equals_model_generate(backend, tiny_llama, tiny_tokenizer):
    """Greedy completions are transformers' own greedy ids (cut after the EOS), n equal copies."""
    outs = backend.generate(PROMPTS, SamplingConfig(n=3, temperature=0, max_new_tokens=8))
    eos = tiny_tokenizer.eos_token_id
    for prompt, group in zip(PROMPTS, outs, strict=True):
        ids = torch.tensor([tiny_tokenizer(prompt)["input_ids"]])
        ref = tiny_llama.generate(
            ids, do_sample=False, max_new_tokens=8, pad_token_id=eos, eos_token_id=eos
        )[0, ids.shape[1] :].tolist()
        ref = ref[: ref.index(eos) + 1] if eos in ref else ref
        assert [c.token_ids for c in group] == [ref] * 3
        assert len({id(c) for c in group}) == 3  # independent copies


def test_samples_do_not_depend_on_batch_size_or_neighbours(tiny_llama, tiny_tokenizer):
    cfg = SamplingConfig(n=3, max_new_tokens=8, temperature=1.0, top_k=50, top_p=0.9, seed=11)
    runs = [
        make_backend(
            "transformers", model=tiny_llama, tokenizer=tiny_tokenizer, batch_size=bs
        ).generate(PROMPTS, cfg)
        for bs in (1, 2, 3)
    ]
    ids = [[[c.token_ids for c in g] for g in run] for run in runs]
    assert ids[0] == ids[1] == ids[2]
    assert len({tuple(t) for g in ids[0] for t in g}) > 3  # really sampled
    # a prompt's samples depend on its index in the call, not on the other prompts
    swapped = make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer).generate(
        [PROMPTS[0], "another prompt entirely"], cfg
    )
    assert [c.token_ids for c in swapped[0]] == ids[0][0]


def test_sampling_leaves_the_callers_torch_rng_alone(backend):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    backend.generate(PROMPTS, SamplingConfig(n=2, max_new_tokens=4, seed=5))
    assert torch.equal(torch.get_rng_state(), state)
    # seed=None draws from the global RNG: seeding it makes the call reproducible
    cfg = SamplingConfig(n=2, max_new_tokens=6)
    torch.manual_seed(1)
    a = backend.generate(PROMPTS, cfg)
    torch.manual_seed(1)
    b = backend.generate(PROMPTS, cfg)
    assert [[c.token_ids for c in g] for g in a] == [[c.token_ids for c in g] for g in b]


def test_sampler_uses_transformers_warpers_and_its_own_stream():
    """_RowSampler keeps exactly the tokens transformers' top-k/top-p keep, and samples in proportion."""
    import numpy as np
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from papercore.generation.hf import _RowSampler

    torch.manual_seed(0)
    logits = torch.randn(2, 20)
    cfg = SamplingConfig(temperature=0.7, top_k=8, top_p=0.8)
    ref = logits.clone()
    for w in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(8), TopPLogitsWarper(0.8)):
        ref = w(None, ref)
    allowed = [set(torch.nonzero(torch.isfinite(r)).flatten().tolist()) for r in ref]
    sampler = _RowSampler([np.random.default_rng(0), np.random.default_rng(1)], cfg)
    counts = torch.zeros(2, 20)
    for _ in range(4000):
        out = sampler(None, logits)
        assert (out == 0).sum(-1).tolist() == [1, 1]
        counts += (out == 0).float()
    for row in range(2):
        assert set(torch.nonzero(counts[row]).flatten().tolist()) <= allowed[row]
        expected = torch.softmax(ref[row], -1)
        assert torch.allclose(counts[row] / 4000, expected, atol=0.03)


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


def test_a_stopped_row_is_the_same_alone_and_batched(trained_counting_lm):
    """pad = eos: a row stopped by a stop string must not keep the batch's padding EOS."""
    from papercore.models import load_model, load_tokenizer

    tok = load_tokenizer(trained_counting_lm)
    assert tok.pad_token_id == tok.eos_token_id
    b = make_backend(
        "transformers", model=load_model(trained_counting_lm), tokenizer=tok, batch_size=4
    )
    prompts = ["count: 10 11 12", "count: 20 21 22"]
    for cfg in (
        SamplingConfig(temperature=0, max_new_tokens=12, stop=(" 14",), logprobs=True),
        SamplingConfig(
            n=2, temperature=1.0, max_new_tokens=12, stop=(" 14",), logprobs=True, seed=0
        ),
    ):
        alone = b.generate(prompts[:1], cfg)[0]
        batched = b.generate(prompts, cfg)[0]
        assert alone[0].text == " 13" or cfg.seed is not None
        for a, c in zip(alone, batched, strict=True):
            assert (a.text, a.finish_reason) == (c.text, c.finish_reason)
            assert a.token_ids == c.token_ids and tok.eos_token_id not in c.token_ids
            assert len(c.logprobs) == len(c.token_ids)
            assert c.logprobs == pytest.approx(a.logprobs, abs=1e-4)
            assert c.sum_logprob == pytest.approx(a.sum_logprob, abs=1e-4)
    # a row ending on EOS keeps exactly one EOS, however long its neighbours run
    cfg = SamplingConfig(temperature=0, max_new_tokens=12, logprobs=True)
    alone = b.generate(["count: 1 2 3"], cfg)[0][0]
    batched = b.generate(["count: 1 2 3", prompts[1]], cfg)[0][0]
    assert alone.text == " 4 5 6" and len(alone.token_ids) < 7  # the neighbour needs 7
    assert alone.token_ids == batched.token_ids and alone.token_ids[-1] == tok.eos_token_id
    assert alone.token_ids.count(tok.eos_token_id) == 1
    assert batched.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def _bos_tokenizer():
    """The tiny causal tokenizer plus a BOS ``<s>`` that the post-processor prepends (Llama-style)."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    from papercore.testing import CHATML_TEMPLATE, build_causal_tokenizer

    raw = Tokenizer.from_str(build_causal_tokenizer().backend_tokenizer.to_str())
    raw.add_special_tokens(["<s>"])
    bos = raw.token_to_id("<s>")
    raw.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tok.chat_template = "{{ bos_token }}" + CHATML_TEMPLATE  # as Llama / Mistral templates do
    return tok


def test_prompts_start_with_exactly_one_bos(monkeypatch):
    from papercore.generation import encode_prompt
    from papercore.testing import tiny_causal_lm

    tok = _bos_tokenizer()
    bos = tok.bos_token_id
    chat = [{"role": "user", "content": "hi"}]
    rendered = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith(tok.bos_token)  # a caller-rendered template (multi-turn rollouts)
    for prompt in ("count: 1 2 3", chat, rendered):
        ids = encode_prompt(prompt, tok)
        assert ids[0] == bos and ids.count(bos) == 1, ids
    assert encode_prompt(rendered, tok) == encode_prompt(chat, tok)
    model = tiny_causal_lm(tokenizer=tok)
    seen = []
    real_generate = model.generate

    def spy(**kwargs):
        seen.extend(
            ids[mask.bool()].tolist()
            for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"], strict=True)
        )
        return real_generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    backend = make_backend("transformers", model=model, tokenizer=tok, batch_size=4)
    backend.generate(["count: 1 2 3", chat], SamplingConfig(temperature=0, max_new_tokens=2))
    assert len(seen) == 2
    for ids in seen:
        assert ids[0] == bos and ids.count(bos) == 1, ids
    assert seen[0][1:] == tok("count: 1 2 3", add_special_tokens=False)["input_ids"]


def test_vllm_prompts_are_token_ids():
    """vLLM gets token ids (no second BOS from its own tokenisation); no vllm import needed."""
    from papercore.generation.vllm import to_vllm_prompt

    tok = _bos_tokenizer()
    chat = [{"role": "user", "content": "hi"}]
    rendered = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert to_vllm_prompt(chat, tok) == {
        "prompt_token_ids": tok(rendered, add_special_tokens=False)["input_ids"]
    }
    assert to_vllm_prompt("count: 1", tok) == {"prompt_token_ids": tok("count: 1")["input_ids"]}
    for p in ("count: 1", chat):
        ids = to_vllm_prompt(p, tok)["prompt_token_ids"]
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1


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
