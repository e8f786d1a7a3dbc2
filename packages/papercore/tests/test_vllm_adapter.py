"""The vLLM adapter against real vLLM objects (vLLM imports on CPU; its engine needs a GPU)."""

import pytest

from papercore.generation import SamplingConfig

vllm = pytest.importorskip(
    "vllm", reason="vLLM is an optional extra: pip install 'papercore[vllm]'"
)


def test_sampling_params_conversion():
    from papercore.generation.vllm import to_vllm_sampling_params

    sp = to_vllm_sampling_params(
        SamplingConfig(
            n=3,
            max_new_tokens=7,
            temperature=0.5,
            top_p=0.9,
            top_k=20,
            seed=4,
            stop=("\n",),
            logprobs=True,
        )
    )
    assert isinstance(sp, vllm.SamplingParams)
    assert (
        sp.n,
        sp.max_tokens,
        sp.temperature,
        sp.top_p,
        sp.top_k,
        sp.seed,
        sp.stop,
        sp.logprobs,
    ) == (3, 7, 0.5, 0.9, 20, 4, ["\n"], 0)
    sp = to_vllm_sampling_params(SamplingConfig())
    assert sp.top_k in (-1, 0) and sp.logprobs is None and not sp.stop


def test_request_output_conversion():
    from vllm.logprobs import Logprob
    from vllm.outputs import CompletionOutput, RequestOutput

    from papercore.generation.vllm import completions_from_vllm

    outs = [
        CompletionOutput(
            index=0,
            text=" 4 5",
            token_ids=[11, 12, 0],
            cumulative_logprob=-1.5,
            logprobs=[{11: Logprob(-0.5)}, {12: Logprob(-0.75)}, {0: Logprob(-0.25)}],
            finish_reason="stop",
        ),
        CompletionOutput(
            index=1,
            text=" 9",
            token_ids=[19],
            cumulative_logprob=None,
            logprobs=None,
            finish_reason="length",
        ),
    ]
    ro = RequestOutput(
        request_id="r",
        prompt="count: 1 2 3",
        prompt_token_ids=[1, 2],
        prompt_logprobs=None,
        outputs=outs,
        finished=True,
    )
    a, b = completions_from_vllm(ro)
    assert (a.text, a.token_ids, a.logprobs, a.finish_reason) == (
        " 4 5",
        [11, 12, 0],
        [-0.5, -0.75, -0.25],
        "stop",
    )
    assert (b.text, b.token_ids, b.logprobs, b.finish_reason) == (" 9", [19], None, "length")


def test_backend_sends_token_ids_to_llm_generate(tiny_tokenizer):
    from vllm.outputs import CompletionOutput, RequestOutput

    from papercore.generation.vllm import VLLMBackend

    class FakeLLM:
        def __init__(self):
            self.prompts = None

        def get_tokenizer(self):
            return tiny_tokenizer

        def generate(self, prompts, params, use_tqdm=True):
            self.prompts = prompts
            out = CompletionOutput(
                index=0, text=" 4", token_ids=[7], cumulative_logprob=None, logprobs=None,
                finish_reason="length",
            )  # fmt: skip
            return [
                RequestOutput(
                    request_id=str(i),
                    prompt=None,
                    prompt_token_ids=p["prompt_token_ids"],
                    prompt_logprobs=None,
                    outputs=[out],
                    finished=True,
                )
                for i, p in enumerate(prompts)
            ]

    llm = FakeLLM()
    chat = [{"role": "user", "content": "hi"}]
    outs = VLLMBackend(llm).generate(["count: 1", chat], SamplingConfig(max_new_tokens=1))
    rendered = tiny_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert llm.prompts == [
        {"prompt_token_ids": tiny_tokenizer("count: 1")["input_ids"]},
        {"prompt_token_ids": tiny_tokenizer(rendered, add_special_tokens=False)["input_ids"]},
    ]
    assert [[c.text for c in g] for g in outs] == [[" 4"], [" 4"]]
