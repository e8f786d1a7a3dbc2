"""Query-aware evaluation asks the question again through the compressed cache (bench/miniature.py's way)."""

import pytest
import torch

import structkv.evaluate as ev
from structkv.evaluate import EvalSample, build_press, evaluate_method
from structkv.generation import generate, prefill


def _sample(n=120, q=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randint(3, 500, (n,), generator=g)
    return ctx, torch.randint(3, 500, (q,), generator=g)


@pytest.mark.parametrize("method,first_seed", [("snapkv", 5), ("structkv", 10)])
def test_query_aware_answer_is_read_after_the_repeated_question(make_model, method, first_seed):
    model = make_model("llama", "sdpa")
    # a sample on which the two protocols answer differently (found by scanning seeds 0..; deterministic)
    for seed in range(first_seed, first_seed + 20):
        ctx, q = _sample(seed=seed)
        full = torch.cat([ctx, q])[None]
        res = prefill(model, full, build_press(method, 0.3, 0.6, 8, 8))
        want = generate(model, res, q[None], max_new_tokens=4)[0].tolist()
        # the old protocol: first token from the prefill's last logits (no question through the cache)
        res_old = prefill(model, full, build_press(method, 0.3, 0.6, 8, 8))
        old = generate(model, res_old, None, max_new_tokens=4)[0].tolist()
        if want != old:
            break
    assert want != old, "no sample distinguishes the protocols"
    hit = EvalSample(ctx, [q], [want], max_new_tokens=4)
    out = evaluate_method(model, [hit], method, 0.3, 0.6, window_size=8, query_aware=True)
    assert out["query_aware"] and out["n"] == 1
    assert (
        out["accuracy"] == 1.0
    )  # the repeated-question answer, not the prefill-logits one (`old`)


def test_query_aware_passes_the_question_to_generate(make_model, monkeypatch):
    model = make_model("llama", "sdpa")
    ctx, q = _sample(seed=1)
    seen = []
    real = ev.generate

    def spy(model, result, question_ids, **kw):
        seen.append(
            (result.context_length, None if question_ids is None else question_ids.tolist())
        )
        return real(model, result, question_ids, **kw)

    monkeypatch.setattr(ev, "generate", spy)
    s = EvalSample(ctx, [q, q.flip(0)], [[1], [2]], max_new_tokens=2)
    evaluate_method(model, [s], "snapkv", 0.3, window_size=8, query_aware=True)
    # one compression per question (context + that question), then that question again
    assert seen == [(126, [q.tolist()]), (126, [q.flip(0).tolist()])]
    seen.clear()
    evaluate_method(model, [s], "snapkv", 0.3, window_size=8, query_aware=False)
    assert seen == [(120, [q.tolist()]), (120, [q.flip(0).tolist()])]
