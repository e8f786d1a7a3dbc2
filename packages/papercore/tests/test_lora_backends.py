"""Per-prompt LoRA adapters in the transformers backend (peft mixed-adapter batches)."""

import copy
import sys
import threading

import pytest
import torch

from papercore.errors import BackendUnavailableError, ModelNotAvailableError
from papercore.generation import AdapterError, SamplingConfig, make_backend
from papercore.generation.hf import TransformersBackend

peft = pytest.importorskip("peft", reason="LoRA adapters need peft: pip install 'papercore[peft]'")

PROMPTS = ["count: 1 2 3", "SELECT name FROM", "The model reads", "hello"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models on a shared CPU: one torch thread (more only spin-wait; 70x slower under load)."""
    from papercore.seeding import torch_threads

    with torch_threads(1):
        yield


MIXED = ["math", None, "code", "math"]
CONFIGS = {
    "greedy": SamplingConfig(temperature=0, max_new_tokens=8, logprobs=True),
    "sampled": SamplingConfig(
        n=3, temperature=1.0, top_k=50, max_new_tokens=8, seed=7, logprobs=True
    ),
}


def save_lora(base, path, seed: int, r: int = 4):
    """A LoRA adapter on ``base``'s attention and MLP projections with random non-zero weights
    (``init_lora_weights=False``: B is not zero, so the adapter changes the model)."""
    torch.manual_seed(seed)
    cfg = peft.LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=["q_proj", "v_proj", "up_proj"],
        init_lora_weights=False,
    )
    peft.get_peft_model(copy.deepcopy(base), cfg).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def lora_dirs(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    return {
        "math": save_lora(tiny_llama, root / "math", 1),
        "code": save_lora(tiny_llama, root / "code", 2),
    }


@pytest.fixture(scope="module")
def lora_backend(tiny_llama, tiny_tokenizer, lora_dirs):
    """Both adapters loaded onto a copy of the tiny model (the fixture model stays un-adapted)."""
    return TransformersBackend(
        copy.deepcopy(tiny_llama), tiny_tokenizer, adapters=lora_dirs, batch_size=8
    )


@pytest.fixture(scope="module")
def single_adapter_backends(tiny_llama, tiny_tokenizer, lora_dirs):
    """The oracle: one PeftModel per adapter, run the plain peft way (its active adapter, no
    adapter_names), and the un-adapted model."""
    out = {None: make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer)}
    for name, path in lora_dirs.items():
        model = peft.PeftModel.from_pretrained(copy.deepcopy(tiny_llama), path, adapter_name=name)
        out[name] = make_backend("transformers", model=model.eval(), tokenizer=tiny_tokenizer)
    return out


def _ids(groups):
    return [[c.token_ids for c in g] for g in groups]


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_mixed_batch_equals_per_adapter_runs(kind, lora_backend, single_adapter_backends):
    cfg = CONFIGS[kind]
    mixed = lora_backend.generate(PROMPTS, cfg, adapters=MIXED)
    alone = {name: b.generate(PROMPTS, cfg) for name, b in single_adapter_backends.items()}
    for i, name in enumerate(MIXED):
        assert _ids([mixed[i]]) == _ids([alone[name][i]]), (i, name)
        for got, ref in zip(mixed[i], alone[name][i], strict=True):
            assert got.text == ref.text
            assert got.logprobs == pytest.approx(ref.logprobs, abs=1e-4)
    # the same through peft's adapter_names with one adapter for every prompt, and batch size 1
    one_by_one = TransformersBackend(lora_backend.model, lora_backend.tokenizer, batch_size=1)
    for name in ("math", "code", None):
        assert _ids(lora_backend.generate(PROMPTS, cfg, adapters=[name] * 4)) == _ids(alone[name])
    assert _ids(one_by_one.generate(PROMPTS, cfg, adapters=MIXED)) == _ids(mixed)
    # the adapters really change the model: the three runs differ on every prompt
    for i in range(len(PROMPTS)):
        runs = {tuple(map(tuple, _ids([alone[name][i]])[0])) for name in ("math", "code", None)}
        assert len(runs) == 3, i


def test_base_rows_and_default_equal_the_unadapted_model(lora_backend, single_adapter_backends):
    cfg = CONFIGS["sampled"]
    base = _ids(single_adapter_backends[None].generate(PROMPTS, cfg))
    # adapters=None on a model the backend wrapped itself: the base model
    assert _ids(lora_backend.generate(PROMPTS, cfg)) == base
    assert _ids(lora_backend.generate(PROMPTS, cfg, adapters=[None] * 4)) == base
    assert lora_backend.adapter_names == ["math", "code"]


def test_a_user_peft_model_keeps_its_active_adapter(tiny_llama, tiny_tokenizer, lora_dirs):
    model = peft.PeftModel.from_pretrained(
        copy.deepcopy(tiny_llama), lora_dirs["code"], adapter_name="code"
    )
    backend = TransformersBackend(
        model.eval(), tiny_tokenizer, adapters={"math": lora_dirs["math"]}
    )
    assert backend.model is model and backend.adapter_names == ["code", "math"]
    cfg = CONFIGS["greedy"]
    as_is = _ids(backend.generate(PROMPTS, cfg))  # peft's own behaviour: the active adapter
    assert as_is == _ids(backend.generate(PROMPTS, cfg, adapters=["code"] * 4))
    assert as_is != _ids(backend.generate(PROMPTS, cfg, adapters=["math"] * 4))
    backend.generate(PROMPTS, cfg, adapters=["math", "math", None, "code"])
    assert model.active_adapter == "code"  # no set_adapter


def test_threads_sharing_one_model_do_not_mix_adapters(lora_backend):
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=6, seed=3)
    plans = [["math"] * 4, ["code"] * 4, [None] * 4, MIXED]
    expected = [_ids(lora_backend.generate(PROMPTS, cfg, adapters=p)) for p in plans]
    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for _ in range(3):
                got.setdefault(k, []).append(
                    _ids(lora_backend.generate(PROMPTS, cfg, adapters=plans[k]))
                )
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(plans))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(len(plans)):
        assert got[k] == [expected[k]] * 3


def test_adapter_errors(lora_backend, tiny_llama, tiny_tokenizer, lora_dirs, tmp_path):
    cfg = SamplingConfig(temperature=0, max_new_tokens=2)
    with pytest.raises(
        AdapterError, match=r"unknown adapter\(s\) \['sql'\]; .* loaded: \['math', 'code'\]"
    ):
        lora_backend.generate(PROMPTS[:2], cfg, adapters=["math", "sql"])
    with pytest.raises(AdapterError, match="got 1 adapter names for 2 prompts"):
        lora_backend.generate(PROMPTS[:2], cfg, adapters=["math"])
    with pytest.raises(AdapterError, match="got the single string 'math'"):
        lora_backend.generate(PROMPTS[:2], cfg, adapters="math")
    with pytest.raises(AdapterError, match="adapter 1 must be an adapter name"):
        lora_backend.generate(PROMPTS[:2], cfg, adapters=["math", 3])
    plain = make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer)
    with pytest.raises(AdapterError, match="the model is a LlamaForCausalLM, not a peft PeftModel"):
        plain.generate(PROMPTS[:1], cfg, adapters=["math"])
    model = copy.deepcopy(tiny_llama)
    with pytest.raises(ModelNotAvailableError, match=r"adapter 'x': directory .* does not exist"):
        TransformersBackend(model, tiny_tokenizer, adapters={"x": tmp_path / "missing"})
    with pytest.raises(ModelNotAvailableError, match=r"has no adapter_config\.json"):
        TransformersBackend(model, tiny_tokenizer, adapters={"x": tmp_path})
    with pytest.raises(AdapterError, match="other than '__base__'"):
        TransformersBackend(model, tiny_tokenizer, adapters={"__base__": lora_dirs["math"]})
    with pytest.raises(AdapterError, match=r"adapter 'math' is already loaded"):
        TransformersBackend(
            lora_backend.model, tiny_tokenizer, adapters={"math": lora_dirs["math"]}
        )
    assert not any(isinstance(m, peft.tuners.lora.LoraLayer) for m in model.modules())
    lora_backend.model.train()
    try:
        with pytest.raises(AdapterError, match=r"eval mode .* call model.eval\(\)"):
            lora_backend.generate(PROMPTS[:1], cfg, adapters=["math"])
    finally:
        lora_backend.model.eval()


def test_peft_missing_is_clear(monkeypatch, tiny_llama, tiny_tokenizer, lora_dirs):
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'papercore\[peft\]'"):
        TransformersBackend(copy.deepcopy(tiny_llama), tiny_tokenizer, adapters=lora_dirs)
