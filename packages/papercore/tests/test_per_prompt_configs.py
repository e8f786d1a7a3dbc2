"""``generate(prompts, configs=[...])``: one SamplingConfig per prompt, in every backend."""

import dataclasses
import json
import threading

import httpx
import pytest

from papercore.generation import SamplingConfig, make_backend
from papercore.generation.base import SamplingConfigsError, resolve_configs

PROMPTS = ["count: 1 2 3", "SELECT name FROM", "The model reads", "a b c"]
GREEDY = SamplingConfig(n=2, max_new_tokens=6, temperature=0)
HOT = SamplingConfig(n=3, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=11)
COOL = SamplingConfig(n=2, max_new_tokens=5, temperature=0.7, top_k=20, seed=3)
MIXED = [HOT, GREEDY, COOL, HOT]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared CPU: one torch thread (more only spin-wait; 70x slower under load)."""
    from papercore.seeding import torch_threads

    with torch_threads(1):
        yield


def _ids(groups):
    return [[c.token_ids for c in g] for g in groups]


# ---- validation ----


def test_resolve_configs_defaults_and_errors():
    assert resolve_configs(None, None, 2) == [SamplingConfig(), SamplingConfig()]
    assert resolve_configs(HOT, None, 3) == [HOT] * 3
    assert resolve_configs(None, (HOT, COOL), 2) == [HOT, COOL]
    with pytest.raises(SamplingConfigsError, match="not both"):
        resolve_configs(HOT, [HOT, HOT], 2)
    with pytest.raises(SamplingConfigsError, match="got 1 configs for 2 prompts"):
        resolve_configs(None, [HOT], 2)
    with pytest.raises(SamplingConfigsError, match="single SamplingConfig"):
        resolve_configs(None, HOT, 1)
    with pytest.raises(
        SamplingConfigsError, match=r"configs\[1\] must be a SamplingConfig, got dict"
    ):
        resolve_configs(None, [HOT, {"n": 1}], 2)
    assert issubclass(SamplingConfigsError, ValueError)


# ---- transformers ----


@pytest.fixture(scope="module")
def hf(tiny_llama, tiny_tokenizer):
    return make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer, batch_size=2)


def test_transformers_mixed_configs_equal_per_config_calls(hf):
    mixed = hf.generate(PROMPTS, configs=MIXED)
    assert [len(g) for g in mixed] == [3, 2, 2, 3]
    for cfg in (HOT, GREEDY, COOL):
        alone = hf.generate(PROMPTS, cfg)  # the same prompts, all with this config
        for i, c in enumerate(MIXED):
            if c == cfg:
                assert _ids([mixed[i]]) == _ids([alone[i]]), (i, cfg)
    for g in mixed:
        for c in g:
            assert c.text == hf.tokenizer.decode(
                c.token_ids[:-1] if c.token_ids[-1] == hf.tokenizer.eos_token_id else c.token_ids,
                skip_special_tokens=True,
            )
    assert len(mixed[1][0].token_ids) <= 6 and all(len(c.token_ids) <= 5 for c in mixed[2])
    assert mixed[1][0].token_ids == mixed[1][1].token_ids  # greedy: equal copies
    assert len({tuple(c.token_ids) for c in mixed[0]}) > 1  # really sampled
    # prompts 0 and 3 share HOT but have their own random streams (their index in the call)
    assert _ids([mixed[0]]) != _ids([mixed[3]])


def test_transformers_prompt_alone_equals_it_inside_a_mixed_call(hf, tiny_llama, tiny_tokenizer):
    """A prompt sent alone with its config gets the samples it gets at the same index of a mixed
    call, whatever the batch size and the other prompts' configs."""
    for bs in (1, 3):
        backend = make_backend(
            "transformers", model=tiny_llama, tokenizer=tiny_tokenizer, batch_size=bs
        )
        mixed = backend.generate(PROMPTS, configs=MIXED)
        alone = backend.generate(PROMPTS[:1], HOT)
        assert _ids(alone) == _ids(mixed[:1])
        assert _ids(backend.generate(PROMPTS[:1], configs=[HOT])) == _ids(alone)
    # a uniform configs list is the same call as config=
    assert _ids(hf.generate(PROMPTS, configs=[COOL] * 4)) == _ids(hf.generate(PROMPTS, COOL))


def test_transformers_rejects_bad_configs(hf):
    with pytest.raises(SamplingConfigsError, match="not both"):
        hf.generate(PROMPTS[:2], HOT, configs=[HOT, HOT])
    with pytest.raises(SamplingConfigsError, match="got 3 configs for 2 prompts"):
        hf.generate(PROMPTS[:2], configs=[HOT] * 3)


# ---- vLLM (real SamplingParams; a stand-in LLM, since the engine needs a GPU) ----


class FakeLLM:
    """Stands in for ``vllm.LLM``: records the prompts and ``sampling_params`` of each call."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params=None, use_tqdm=True, **kwargs):
        from vllm.outputs import CompletionOutput, RequestOutput

        self.calls.append((prompts, sampling_params, kwargs))
        params = (
            sampling_params
            if isinstance(sampling_params, list)
            else [sampling_params] * len(prompts)
        )
        return [
            RequestOutput(
                request_id=str(i),
                prompt=None,
                prompt_token_ids=p["prompt_token_ids"],
                prompt_logprobs=None,
                outputs=[
                    CompletionOutput(
                        index=k,
                        text=f" t{sp.temperature}",
                        token_ids=[7] * sp.max_tokens,
                        cumulative_logprob=None,
                        logprobs=None,
                        finish_reason="length",
                    )
                    for k in range(sp.n)
                ],
                finished=True,
            )
            for i, (p, sp) in enumerate(zip(prompts, params, strict=True))
        ]


def test_vllm_sends_one_sampling_params_per_prompt_in_one_call(tiny_tokenizer):
    vllm = pytest.importorskip(
        "vllm", reason="vLLM is an optional extra: pip install 'papercore[vllm]'"
    )
    from papercore.generation.vllm import VLLMBackend

    llm = FakeLLM(tiny_tokenizer)
    backend = VLLMBackend(llm)
    greedy1 = dataclasses.replace(GREEDY, n=1)  # vLLM refuses n > 1 with greedy sampling
    outs = backend.generate(PROMPTS, configs=[HOT, greedy1, COOL, HOT])
    assert len(llm.calls) == 1
    prompts, params, _ = llm.calls[0]
    assert [p["prompt_token_ids"] for p in prompts] == [
        tiny_tokenizer(p)["input_ids"] for p in PROMPTS
    ]
    assert isinstance(params, list) and len(params) == len(PROMPTS)
    assert all(isinstance(sp, vllm.SamplingParams) for sp in params)
    got = [(sp.n, sp.max_tokens, sp.temperature, sp.top_p, sp.top_k, sp.seed) for sp in params]
    assert got == [
        (3, 8, 1.0, 0.9, -1, 11),
        (1, 6, 0.0, 1.0, 0, None),  # vLLM resets top_k to 0 when greedy
        (2, 5, 0.7, 1.0, 20, 3),
        (3, 8, 1.0, 0.9, -1, 11),
    ]
    assert [len(g) for g in outs] == [3, 1, 2, 3]
    assert params[0] is params[3]  # equal configs share one SamplingParams
    assert [g[0].text for g in outs] == [" t1.0", " t0", " t0.7", " t1.0"]
    assert [len(g[0].token_ids) for g in outs] == [8, 6, 5, 8]
    # one config for all: a single SamplingParams, as before
    backend.generate(PROMPTS[:2], COOL)
    assert isinstance(llm.calls[1][1], vllm.SamplingParams) and llm.calls[1][1].seed == 3
    with pytest.raises(SamplingConfigsError, match="got 1 configs for 4 prompts"):
        backend.generate(PROMPTS, configs=[HOT])
    with pytest.raises(SamplingConfigsError, match="not both"):
        backend.generate(PROMPTS[:1], HOT, configs=[HOT])
    assert len(llm.calls) == 2  # bad input never reached the engine


# ---- OpenAI-compatible ----


class RecordingServer:
    """An OpenAI-compatible ``/completions`` endpoint behind ``httpx.MockTransport`` that records
    every request body and answers ``n`` choices echoing the prompt and temperature."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bodies: list[dict] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self.lock:
            self.bodies.append(body)
        text = f"{body['prompt']}|{body['temperature']}|{body['max_tokens']}"
        return httpx.Response(200, json={"choices": [{"text": text}] * body["n"]})


@pytest.mark.parametrize("concurrency", [1, 4])
def test_openai_each_request_uses_its_prompts_config(concurrency):
    from papercore.generation.openai import OpenAIBackend

    server = RecordingServer()
    http = httpx.Client(
        base_url="http://fake.test/v1", transport=httpx.MockTransport(server.handler)
    )
    backend = OpenAIBackend(
        "http://fake.test/v1", model="base", client=http, max_concurrency=concurrency
    )
    outs = backend.generate(PROMPTS, configs=MIXED)
    by_prompt = {b["prompt"]: b for b in server.bodies}
    assert len(server.bodies) == len(PROMPTS) == len(by_prompt)
    got = [
        (
            by_prompt[p]["temperature"],
            by_prompt[p]["max_tokens"],
            by_prompt[p]["n"],
            by_prompt[p].get("seed"),
            by_prompt[p].get("top_k"),
        )
        for p in PROMPTS
    ]
    assert got == [
        (1.0, 8, 3, 11, None),
        (0, 6, 2, None, None),
        (0.7, 5, 2, 3, 20),
        (1.0, 8, 3, 11, None),
    ]
    assert [[c.text for c in g] for g in outs] == [
        [f"{p}|{c.temperature}|{c.max_new_tokens}"] * c.n
        for p, c in zip(PROMPTS, MIXED, strict=True)
    ]
    with pytest.raises(SamplingConfigsError, match="got 2 configs for 4 prompts"):
        backend.generate(PROMPTS, configs=[HOT, COOL])
    assert len(server.bodies) == len(PROMPTS)
