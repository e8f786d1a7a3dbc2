"""The transformers pipeline: same answers as prefill + generate, one compressed context for many questions."""

from __future__ import annotations

import copy

import pytest
import torch

from structkv import StructKVPress, generate, prefill
from structkv.pipeline import TASK, StructKVPipeline

CONTEXT = " ".join(f"the key {i} opens door {i * 7 % 13} of the old house ." for i in range(30))


@pytest.fixture(scope="module")
def plain_tok(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None  # the no-template path: BOS + context, question + newline
    return tok


@pytest.fixture(scope="module")
def pipe(make_model, plain_tok):
    return StructKVPipeline(model=make_model("llama", "sdpa"), tokenizer=plain_tok)


def _manual(model, tok, question, press, n_new=6):
    ctx = tok((tok.bos_token or "") + CONTEXT, add_special_tokens=False, return_tensors="pt")
    q = tok(question + "\n", add_special_tokens=False, return_tensors="pt")["input_ids"]
    res = prefill(model, ctx["input_ids"], press)
    return generate(model, res, q, max_new_tokens=n_new, eos_token_id=tok.eos_token_id)[0]


def test_pipeline_equals_prefill_and_generate(pipe, make_model, plain_tok):
    model = make_model("llama", "sdpa")
    for press in (None, StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)):
        out = pipe(CONTEXT, question="which door ?", press=press, max_new_tokens=6)
        ids = _manual(model, plain_tok, "which door ?", press).tolist()
        eos = plain_tok.eos_token_id
        ids = ids[: ids.index(eos)] if eos in ids else ids
        assert out["answer"] == plain_tok.decode(ids, skip_special_tokens=True)
        assert out["context_tokens"] > 100
    assert out["stats"]["pivot_layer"] is not None and 0 < out["stats"]["prefill_cost"] < 1
    n = out["context_tokens"]
    assert max(out["cache_lengths"]) < n  # compressed: every layer below the context length


def test_many_questions_reuse_one_compressed_context(pipe):
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)
    qs = ["which door ?", "the key 3 opens", ""]
    many = pipe(CONTEXT, questions=qs, press=press, max_new_tokens=5)
    assert len(many["answers"]) == 3
    for q, a in zip(qs, many["answers"], strict=True):
        assert pipe(CONTEXT, question=q, press=press, max_new_tokens=5)["answer"] == a


def test_registered_task_and_chat_template(make_model, tiny_tokenizer):
    from transformers import pipeline

    # the tokenizer's own (Qwen-style) template: context + question render as one user turn
    p = pipeline(TASK, model=make_model("llama", "sdpa"), tokenizer=tiny_tokenizer)
    head, suffix = p._render(CONTEXT)
    whole = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": CONTEXT + "which door ?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert head + "which door ?" + suffix == whole
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<user> {{ m['content'] }} </user>{% endfor %}"
        "{% if add_generation_prompt %} <bot>{% endif %}"
    )
    p = pipeline(TASK, model=make_model("llama", "sdpa"), tokenizer=tok)
    assert isinstance(p, StructKVPipeline)
    head, suffix = p._render("abc")
    assert head == "<user> abc" and suffix == " </user> <bot>"
    out = p(CONTEXT, question="which door ?", max_new_tokens=3, max_context_length=64)
    assert out["context_tokens"] == 64 and isinstance(out["answer"], str)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"question": "a", "questions": ["b"]}, "either question= or questions="),
        ({"questions": "a"}, "list of strings"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_context_length": 0}, "max_context_length"),
        ({"temperature": 0.7}, "unknown argument"),
    ],
)
def test_bad_arguments_are_named(pipe, kwargs, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        pipe(CONTEXT, **kwargs)


def test_empty_context_is_rejected(pipe):
    with pytest.raises(ValueError, match="non-empty string"):
        pipe("   ", question="x")
    assert torch.is_tensor(pipe.preprocess(CONTEXT, ["q"], "", None)["context_ids"])
