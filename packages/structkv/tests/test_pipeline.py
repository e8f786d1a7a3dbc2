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
    tok.chat_template = None  # the no-template path: context, then "\n" + question
    return tok


@pytest.fixture(scope="module")
def pipe(make_model, plain_tok):
    return StructKVPipeline(model=make_model("llama", "sdpa"), tokenizer=plain_tok)


def _manual(model, tok, question, press, n_new=6):
    # the plain prompt of records_to_samples / structkv eval: tokenizer specials + context, "\n" + question
    ctx = tok(CONTEXT, add_special_tokens=True, return_tensors="pt")
    q = tok("\n" + question, add_special_tokens=False, return_tensors="pt")["input_ids"]
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


@pytest.mark.parametrize(
    ("kwargs", "err", "msg"),
    [
        ({"press": "structkv"}, TypeError, r"press= must be a structkv press \(BasePress"),
        ({"press": StructKVPress}, TypeError, "BasePress"),  # the class, not an instance
        ({"question_mode": "fast"}, ValueError, r"'masked', 'tokenwise'"),
        ({"query_aware": "yes"}, TypeError, "query_aware= must be a bool"),
        ({"answer_prefix": 3}, TypeError, "answer_prefix"),
    ],
)
def test_bad_press_and_mode_fail_before_any_prefill(pipe, monkeypatch, kwargs, err, msg):
    import structkv.pipeline as sp

    def no_prefill(*a, **k):
        raise AssertionError("prefill ran before the arguments were checked")

    monkeypatch.setattr(sp, "prefill", no_prefill)
    with pytest.raises(err, match=msg):
        pipe(CONTEXT, question="q", **kwargs)
    with pytest.raises(err, match=msg):  # also at construction
        StructKVPipeline(model=pipe.model, tokenizer=pipe.tokenizer, **kwargs)


def test_construction_parameters_are_not_overridden_by_defaults(make_model, plain_tok):
    from transformers import pipeline

    model = make_model("llama", "sdpa")
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)
    p = pipeline(TASK, model=model, tokenizer=plain_tok, press=press, max_new_tokens=3)
    out = p(CONTEXT, question="which door ?")
    assert out["stats"]["press"] == "StructKVPress" and out["stats"]["pivot_layer"] is not None
    assert max(out["cache_lengths"]) < out["context_tokens"]
    ids = _manual(model, plain_tok, "which door ?", press, n_new=3).tolist()
    assert len(ids) == 3 and out["answer"] == plain_tok.decode(ids, skip_special_tokens=True)
    # a call-time value still wins over the construction value (press=None: the full cache)
    full = p(CONTEXT, question="which door ?", press=None, max_new_tokens=5)
    assert full["stats"]["press"] == "full" and full["cache_lengths"][0] == full["context_tokens"]
    ids5 = _manual(model, plain_tok, "which door ?", None, n_new=5).tolist()
    assert full["answer"] == plain_tok.decode(ids5, skip_special_tokens=True)


def test_plain_prompt_is_the_one_of_records_to_samples(pipe, plain_tok):
    from structkv.synthetic.text_tasks import records_to_samples

    rec = {"context": CONTEXT, "question": "which door ?", "answer_prefix": " Door", "answer": "1"}
    (sample,) = records_to_samples([rec], plain_tok)
    enc = pipe.preprocess(CONTEXT, questions=[rec["question"]], answer_prefix=rec["answer_prefix"])
    assert enc["context_ids"][0].tolist() == sample.context_ids.tolist()
    assert enc["question_ids"][0][0].tolist() == sample.question_ids[0].tolist()
    assert plain_tok.decode(enc["question_ids"][0][0]).startswith("\nwhich door")
    # over-long contexts: the pipeline keeps the FIRST tokens (records_to_samples keeps the last)
    cut = pipe.preprocess(CONTEXT, questions=["q"], max_context_length=10)["context_ids"]
    assert cut[0].tolist() == sample.context_ids[:10].tolist()


def test_query_aware_compresses_context_and_question_together(pipe, make_model, plain_tok):
    model = make_model("llama", "sdpa")
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)
    ctx = plain_tok(CONTEXT, add_special_tokens=True, return_tensors="pt")["input_ids"]
    qs = ["which door ?", "the key 3 opens"]
    many = pipe(CONTEXT, questions=qs, press=press, max_new_tokens=5, query_aware=True)
    assert len(many["answers"]) == len(many["stats"]) == len(many["cache_lengths"]) == 2
    for i, q in enumerate(qs):
        qids = plain_tok("\n" + q, add_special_tokens=False, return_tensors="pt")["input_ids"]
        whole = torch.cat([ctx, qids], dim=1)
        res = prefill(model, whole, press)  # the question lies in the window of the press
        # then it is asked again through the compressed cache: no answer token from the full prefill
        ids = generate(model, res, qids, max_new_tokens=5, eos_token_id=plain_tok.eos_token_id)
        assert many["answers"][i] == plain_tok.decode(ids[0].tolist(), skip_special_tokens=True)
        assert many["cache_lengths"][i] == res.cache_lengths
        # every layer keeps M = ⌊N·(1 − ratio)⌋ of the N = context + question tokens (kvpress's count)
        assert all(c == press.n_kept(whole.shape[1]) for c in many["cache_lengths"][i])
        one = pipe(CONTEXT, question=q, press=press, max_new_tokens=5, query_aware=True)
        assert one["answer"] == many["answers"][i] and one["stats"] == many["stats"][i]
        assert one["context_tokens"] == ctx.shape[1] and isinstance(one["stats"], dict)


def test_chat_template_that_drops_the_marker_is_named(make_model, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (  # a template that escapes/normalises the user text (here: lower-cases it)
        "{% for m in messages %}<user> {{ m['content'] | lower }} </user>{% endfor %}"
        "{% if add_generation_prompt %} <bot>{% endif %}"
    )
    p = StructKVPipeline(model=make_model("llama", "sdpa"), tokenizer=tok)
    with pytest.raises(ValueError, match=r"chat template.*marker"):
        p(CONTEXT, question="which door ?", max_new_tokens=2)


def test_chat_template_path_with_a_press(make_model, tiny_tokenizer):
    model = make_model("llama", "sdpa")
    p = StructKVPipeline(model=model, tokenizer=tiny_tokenizer)
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=8)
    q, prefix = "which door ?", " The door is"
    out = p(CONTEXT, question=q, press=press, answer_prefix=prefix, max_new_tokens=4)
    head, suffix = p._render(CONTEXT)
    assert head.startswith("<|im_start|>") and suffix.startswith("<|im_end|>")
    ctx = tiny_tokenizer(head, add_special_tokens=False, return_tensors="pt")["input_ids"]
    qids = tiny_tokenizer(q + suffix + prefix, add_special_tokens=False, return_tensors="pt")
    res = prefill(model, ctx, press)
    ids = generate(model, res, qids["input_ids"], 4, tiny_tokenizer.eos_token_id)[0].tolist()
    eos = tiny_tokenizer.eos_token_id
    ids = ids[: ids.index(eos)] if eos in ids else ids
    assert out["answer"] == tiny_tokenizer.decode(ids, skip_special_tokens=True)
    assert out["context_tokens"] == ctx.shape[1]
    assert out["stats"]["pivot_layer"] is not None and 0 < out["stats"]["prefill_cost"] < 1
    assert out["cache_lengths"] == res.cache_lengths and max(out["cache_lengths"]) < ctx.shape[1]
