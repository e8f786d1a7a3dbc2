"""Synthetic bench tasks: key-value retrieval and two-hop variable tracking, with needle positions."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from structkv.synthetic.tasks import RecallVocab
from structkv.tasks import (
    TaskConfigError,
    kv_retrieval_sample,
    kv_retrieval_samples,
    two_hop_sample,
    two_hop_samples,
    two_hop_training_batch,
)

V = RecallVocab(32, 32, 32)


def _is_key(t: int) -> bool:
    return V.key0 <= t < V.value0


def test_kv_retrieval_answers_follow_their_keys_and_needles_are_every_pair():
    for s in kv_retrieval_samples(20, 128, 4, 3, V, seed=1):
        ctx = s.context.tolist()
        assert len(ctx) == 128 and ctx[0] == V.bos
        assert len(s.needle_positions) == 8
        keys_at = [p for p in s.needle_positions if _is_key(ctx[p])]
        assert sorted(keys_at + [p + 1 for p in keys_at]) == s.needle_positions
        for (q,), (a,) in zip(s.questions, s.answers, strict=True):
            p = ctx.index(q)
            assert ctx[p + 1] == a and p in s.needle_positions
        assert len(s.questions) == 3


def test_two_hop_chain_order_answers_and_needles():
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        s = two_hop_sample(200, 2, gen, V, n_distractors=2)
        ctx = s.context.tolist()
        assert len(s.needle_positions) == 2 * (2 * 2 + 2)
        keys = [ctx[p] for p in s.needle_positions if _is_key(ctx[p]) and p % 3 == 1]
        assert len(keys) == len(set(keys)) == 6  # every binding has its own variable
        for (xb,), (xa, v) in zip(s.questions, s.answers, strict=True):
            p2 = ctx.index(xb)  # x_b = x_a
            assert ctx[p2 + 1] == xa
            p1 = ctx.index(xa)  # x_a = v comes first
            assert p1 < p2 and ctx[p1 + 1] == v and V.value0 <= v < V.filler0
        # bindings never touch: a filler token at least between two of them
        starts = s.needle_positions[::2]
        assert all(b - a >= 3 for a, b in pairwise(starts))


def test_samples_are_deterministic_per_seed():
    a = two_hop_samples(3, 90, 1, V, seed=5)
    b = two_hop_samples(3, 90, 1, V, seed=5)
    c = two_hop_samples(3, 90, 1, V, seed=6)
    assert all(torch.equal(x.context, y.context) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x.context, y.context) for x, y in zip(a, c, strict=True))


def test_two_hop_training_batch_supervises_both_hops():
    ids, labels = two_hop_training_batch(2, 60, 2, torch.Generator().manual_seed(0), V)
    assert ids.shape == labels.shape == (2, 66)
    for row in range(2):
        tail, lab = ids[row, 60:].tolist(), labels[row, 60:].tolist()
        for c in range(2):
            _, xa, v = tail[3 * c : 3 * c + 3]
            assert lab[3 * c : 3 * c + 3] == [xa, v, -100]
        assert (labels[row, :60] == -100).all()


def test_eval_sample_conversion_keeps_needles_and_answer_length():
    s = two_hop_sample(90, 1, torch.Generator().manual_seed(0), V)
    e = s.to_eval_sample()
    assert e.max_new_tokens == 2 and e.meta["needle_positions"] == s.needle_positions
    k = kv_retrieval_sample(40, 2, 2, torch.Generator().manual_seed(0), V).to_eval_sample()
    assert k.max_new_tokens == 1 and k.answers[0] == [
        int(k.context_ids[k.context_ids.tolist().index(int(k.question_ids[0])) + 1])
    ]


@pytest.mark.parametrize(
    "length, chains, distractors, match",
    [
        (20, 4, 0, "holds 6 bindings, 8 requested"),
        (90, 0, 0, "n_chains >= 1"),
        (400, 10, 20, "distinct keys"),
    ],
)
def test_two_hop_sizes_that_do_not_fit_raise(length, chains, distractors, match):
    with pytest.raises(TaskConfigError, match=match):
        two_hop_sample(length, chains, torch.Generator(), V, n_distractors=distractors)
    assert issubclass(TaskConfigError, ValueError)
