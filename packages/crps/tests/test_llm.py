from __future__ import annotations

import pytest

from crps_synth import BackendChatLLM, BackendStepGenerator, ScriptedChatLLM
from crps_synth.llm import explorer_prompt


@pytest.fixture
def backend(tiny_llama, tiny_tokenizer):
    from papercore.generation import make_backend

    return make_backend("transformers", model=tiny_llama, tokenizer=tiny_tokenizer)


def test_step_generator_on_transformers_backend(backend, one_torch_thread):
    gen = BackendStepGenerator(backend, step_max_tokens=6, rollout_max_tokens=12)
    steps = gen.propose("What is 2+2?", ["2+2 is four"], 3, 0.7, seed=1)
    assert len(steps) == 3 and all(isinstance(s, str) for s in steps)
    assert steps == gen.propose("What is 2+2?", ["2+2 is four"], 3, 0.7, seed=1)  # seeded
    assert all("\nStep" not in s for s in steps)  # cut at the next step marker
    assert isinstance(gen.rollout("What is 2+2?", [], 0.7, seed=2), list)


def test_explorer_prompt_shape():
    p = explorer_prompt("Q?", ["a", "b"])
    assert p.startswith("Q?\nPlease reason step by step")
    assert p.endswith("Step 1: a\nStep 2: b\nStep 3:")


def test_chat_llm_on_transformers_backend(backend, one_torch_thread):
    llm = BackendChatLLM(backend, seed=0)
    a = llm.chat("system text", "user text", temperature=0.0, max_tokens=5)
    assert isinstance(a, str) and a == llm.chat(
        "system text", "user text", temperature=0.0, max_tokens=5
    )


def test_scripted_llm_mapping_and_errors():
    llm = ScriptedChatLLM({"Trajectory A": "{}", "Problem": "Step 1: \\boxed{1}"})
    assert llm.chat("s", "has Trajectory A inside") == "{}"
    assert llm.chat("s", "Problem: x") == "Step 1: \\boxed{1}" and llm.calls == 2
    with pytest.raises(KeyError, match="no reply"):
        llm.chat("s", "something else")
    with pytest.raises(TypeError):
        ScriptedChatLLM(42)
    with pytest.raises(TypeError):
        BackendStepGenerator(object())
