"""The vLLM adapter against real vLLM objects (vLLM imports on CPU; its engine needs a GPU)."""

import pytest

from papercore.generation import SamplingConfig

vllm = pytest.importorskip(
    "vllm", reason="vLLM is an optional extra: pip install 'papercore[vllm]'"
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared CPU: one torch thread (more only spin-wait; 70x slower under load)."""
    from papercore.seeding import torch_threads

    with torch_threads(1):
        yield


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


class FakeLLM:
    """Stands in for ``vllm.LLM`` (its engine needs a GPU): answers " 4" to every prompt and records
    the prompts and keyword arguments ``generate`` receives. ``lora_enabled``: what
    ``llm_engine.vllm_config.lora_config`` says (``None``: the attribute is absent)."""

    def __init__(self, tokenizer, lora_enabled: bool | None = None):
        self.tokenizer = tokenizer
        self.prompts = None
        self.calls = []
        if lora_enabled is not None:
            config = type("C", (), {"lora_config": object() if lora_enabled else None})
            self.llm_engine = type("E", (), {"vllm_config": config})

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm=True, **kwargs):
        from vllm.outputs import CompletionOutput, RequestOutput

        self.prompts = prompts
        self.calls.append(kwargs)
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


def test_backend_sends_token_ids_to_llm_generate(tiny_tokenizer):
    from papercore.generation.vllm import VLLMBackend

    llm = FakeLLM(tiny_tokenizer)
    chat = [{"role": "user", "content": "hi"}]
    outs = VLLMBackend(llm).generate(["count: 1", chat], SamplingConfig(max_new_tokens=1))
    rendered = tiny_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert llm.prompts == [
        {"prompt_token_ids": tiny_tokenizer("count: 1")["input_ids"]},
        {"prompt_token_ids": tiny_tokenizer(rendered, add_special_tokens=False)["input_ids"]},
    ]
    assert [[c.text for c in g] for g in outs] == [[" 4"], [" 4"]]


# --- per-prompt LoRA adapters -------------------------------------------------------------------


def _save_lora(base, path, seed: int, r: int):
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    import copy

    torch.manual_seed(seed)
    cfg = peft.LoraConfig(r=r, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(copy.deepcopy(base), cfg).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def lora_dirs(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-lora")
    return {
        "math": _save_lora(tiny_llama, root / "math", 1, r=4),
        "code": _save_lora(tiny_llama, root / "code", 2, r=20),
    }


def _rows_fed_to_transformers(model, tokenizer, prompts, monkeypatch):
    """The unpadded prompt ids the transformers backend gives ``model.generate`` (the oracle)."""
    from papercore.generation import make_backend

    seen = []
    real_generate = model.generate

    def spy(**kwargs):
        seen.extend(
            ids[mask.bool()].tolist()
            for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"], strict=True)
        )
        return real_generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    make_backend("transformers", model=model, tokenizer=tokenizer, batch_size=8).generate(
        prompts, SamplingConfig(temperature=0, max_new_tokens=1)
    )
    return seen


def test_to_vllm_requests_one_lora_request_per_prompt(
    tiny_llama, tiny_tokenizer, lora_dirs, monkeypatch
):
    from vllm.lora.request import LoRARequest

    from papercore.generation.vllm import to_vllm_requests

    chat = [{"role": "user", "content": "hi"}]
    prompts = ["count: 1", chat, "SELECT name FROM", "hello"]
    token_prompts, lora = to_vllm_requests(
        prompts, ["code", None, "math", "code"], lora_dirs, tiny_tokenizer
    )
    oracle = _rows_fed_to_transformers(tiny_llama, tiny_tokenizer, prompts, monkeypatch)
    assert [p["prompt_token_ids"] for p in token_prompts] == oracle
    assert lora[1] is None
    assert all(isinstance(r, LoRARequest) for i, r in enumerate(lora) if i != 1)
    # ids follow the order of lora_adapters (math=1, code=2), the same for every call
    assert [(r.lora_name, r.lora_int_id, r.lora_path) for r in (lora[0], lora[2])] == [
        ("code", 2, lora_dirs["code"]),
        ("math", 1, lora_dirs["math"]),
    ]
    assert lora[3] == lora[0] and lora[3].lora_int_id == 2
    _, again = to_vllm_requests(["x"], ["code"], lora_dirs, tiny_tokenizer)
    assert again[0].lora_int_id == 2
    # no adapters: no lora_request at all; all None: base model for every prompt
    assert to_vllm_requests(prompts, None, lora_dirs, tiny_tokenizer)[1] is None
    assert to_vllm_requests(prompts, [None] * 4, {}, tiny_tokenizer)[1] == [None] * 4


def test_to_vllm_requests_errors(tiny_tokenizer, lora_dirs):
    from papercore.generation import AdapterError
    from papercore.generation.vllm import to_vllm_requests

    with pytest.raises(
        AdapterError, match=r"unknown adapter\(s\) \['sql'\]; .* adapters: \['math', 'code'\]"
    ):
        to_vllm_requests(["a", "b"], ["math", "sql"], lora_dirs, tiny_tokenizer)
    with pytest.raises(AdapterError, match="got 3 adapter names for 2 prompts"):
        to_vllm_requests(["a", "b"], ["math"] * 3, lora_dirs, tiny_tokenizer)
    with pytest.raises(AdapterError, match=r"unknown adapter\(s\) \['math'\]; .* adapters: \[\]"):
        to_vllm_requests(["a"], ["math"], None, tiny_tokenizer)


def test_lora_engine_kwargs(lora_dirs, tmp_path):
    from papercore.errors import ModelNotAvailableError
    from papercore.generation import AdapterError
    from papercore.generation.vllm import vllm_lora_engine_kwargs

    kw = vllm_lora_engine_kwargs(lora_dirs, {"gpu_memory_utilization": 0.5})
    # rank 20 needs vLLM's next allowed max_lora_rank, 32; both adapters fit in one batch
    assert kw == {
        "gpu_memory_utilization": 0.5,
        "enable_lora": True,
        "max_loras": 2,
        "max_lora_rank": 32,
    }
    assert vllm_lora_engine_kwargs({"math": lora_dirs["math"]}, {})["max_lora_rank"] == 8
    kw = vllm_lora_engine_kwargs(lora_dirs, {"max_loras": 1, "max_lora_rank": 64})
    assert (kw["max_loras"], kw["max_lora_rank"]) == (1, 64)
    with pytest.raises(AdapterError, match="enable_lora=False"):
        vllm_lora_engine_kwargs(lora_dirs, {"enable_lora": False})
    with pytest.raises(ModelNotAvailableError, match=r"adapter 'x': .* does not exist"):
        vllm_lora_engine_kwargs({"x": tmp_path / "missing"}, {})
    # the engine accepts the kwargs (its LoRA config validates without a GPU)
    from vllm.config.lora import LoRAConfig

    kw = vllm_lora_engine_kwargs(lora_dirs, {})
    cfg = LoRAConfig(max_lora_rank=kw["max_lora_rank"], max_loras=kw["max_loras"])
    assert (cfg.max_lora_rank, cfg.max_loras) == (32, 2)


def test_backend_sends_lora_requests_to_llm_generate(tiny_tokenizer, lora_dirs):
    from papercore.generation import AdapterError
    from papercore.generation.vllm import VLLMBackend

    llm = FakeLLM(tiny_tokenizer, lora_enabled=True)
    backend = VLLMBackend(llm, lora_adapters=lora_dirs)
    cfg = SamplingConfig(max_new_tokens=1)
    outs = backend.generate(["a", "b", "c"], cfg, adapters=["math", None, "code"])
    assert len(outs) == 3
    (kwargs,) = llm.calls
    lora = kwargs["lora_request"]
    assert [None if r is None else (r.lora_name, r.lora_int_id) for r in lora] == [
        ("math", 1),
        None,
        ("code", 2),
    ]
    backend.generate(["a"], cfg)
    assert "lora_request" not in llm.calls[-1]  # no adapters: vLLM's default (base model)
    with pytest.raises(AdapterError, match="built without LoRA support"):
        VLLMBackend(FakeLLM(tiny_tokenizer, lora_enabled=False), lora_adapters=lora_dirs)
    with pytest.raises(TypeError, match="only apply when VLLMBackend builds the LLM"):
        VLLMBackend(llm, max_model_len=128)


def test_greedy_n_decodes_once_and_copies(tiny_tokenizer):
    """Greedy with n > 1 asks vLLM for one sequence (n equal decodes would be wasted) and the backend
    returns n equal, independent copies, as the transformers backend does; sampling keeps n."""
    from papercore.generation.vllm import VLLMBackend, to_vllm_sampling_params

    assert to_vllm_sampling_params(SamplingConfig(n=4, temperature=0)).n == 1
    assert to_vllm_sampling_params(SamplingConfig(n=4, temperature=0.7)).n == 4

    class Recording(FakeLLM):
        def generate(self, prompts, params, use_tqdm=True, **kwargs):
            self.params = params
            return super().generate(prompts, params, use_tqdm=use_tqdm, **kwargs)

    llm = Recording(tiny_tokenizer)
    outs = VLLMBackend(llm).generate(
        ["a", "b"], SamplingConfig(n=3, temperature=0, max_new_tokens=1)
    )
    assert llm.params.n == 1
    assert [len(o) for o in outs] == [3, 3]
    assert all(c.token_ids == [7] for o in outs for c in o)
    outs[0][0].token_ids.append(99)  # copies, not one object three times
    assert outs[0][1].token_ids == [7]

    greedy = SamplingConfig(n=2, temperature=0, max_new_tokens=1)
    sampled = SamplingConfig(n=1, temperature=0.5, max_new_tokens=1)
    outs = VLLMBackend(llm).generate(["a", "b"], configs=[greedy, sampled])
    assert [p.n for p in llm.params] == [1, 1]
    assert [len(o) for o in outs] == [2, 1]
