"""Synthetic retrieval tasks for the CPU bench, with the positions of their needles (for an oracle).

Integer vocabulary (:class:`~structkv.synthetic.tasks.RecallVocab`: BOS, keys, values, filler); every
sample is a filler haystack with planted bindings, and questions are answered by greedy decoding
through the (compressed) cache, so every answer token is read from it:

* **key-value retrieval** (MQAR / RULER multi-key NIAH): ``key value`` pairs; question ``key`` → ``value``.
* **two-hop variable tracking** (spec §4.B task ii, RULER's variable tracking in miniature):
  ``x_a v`` (x_a = v) somewhere, then ``x_b x_a`` (x_b = x_a) later; question ``x_b`` → ``x_a v``:
  the first answer token names the intermediate variable, the second is read from the binding
  ``x_a v``, which nothing but the second hop points to (the "dormant hub" of the spec).

``needle_positions`` lists every planted token position; :class:`~structkv.presses.OraclePress`
keeps them to give the accuracy ceiling of a KV budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from structkv.errors import StructKVError
from structkv.synthetic.tasks import RecallVocab, make_recall_sample

if TYPE_CHECKING:
    from structkv.evaluate import EvalSample


class TaskConfigError(StructKVError, ValueError):
    """A synthetic task's sizes do not fit (length, pairs, chains, queries)."""


@dataclass
class TaskSample:
    """One haystack: ``context`` (N,) with BOS, ``questions[i]`` answered by ``answers[i]`` (token ids)."""

    context: torch.Tensor
    questions: list[list[int]]
    answers: list[list[int]]
    needle_positions: list[int]
    meta: dict = field(default_factory=dict)

    def to_eval_sample(self) -> EvalSample:
        """The same sample as a :class:`structkv.evaluate.EvalSample` (needles in ``meta``)."""
        from structkv.evaluate import EvalSample

        return EvalSample(
            context_ids=self.context,
            question_ids=[torch.tensor(q) for q in self.questions],
            answers=[list(a) for a in self.answers],
            max_new_tokens=max(len(a) for a in self.answers),
            meta={**self.meta, "needle_positions": list(self.needle_positions)},
        )


def kv_retrieval_sample(
    length: int, n_pairs: int, n_queries: int, gen: torch.Generator, vocab: RecallVocab
) -> TaskSample:
    """``n_pairs`` ``key value`` pairs in a ``length``-token haystack; ``n_queries`` of them asked."""
    s = make_recall_sample(length, n_pairs, n_queries, gen, vocab)
    is_key = (s.context >= vocab.key0) & (s.context < vocab.value0)
    keys = is_key.nonzero().flatten().tolist()
    needles = sorted(p for k in keys for p in (k, k + 1))
    return TaskSample(
        context=s.context,
        questions=[[q] for q in s.queries],
        answers=[[a] for a in s.answers],
        needle_positions=needles,
        meta={"task": "kv_retrieval", "pair_positions": s.pair_positions},
    )


def two_hop_sample(
    length: int,
    n_chains: int,
    gen: torch.Generator,
    vocab: RecallVocab,
    n_distractors: int = 0,
) -> TaskSample:
    """``n_chains`` chains ``x_a v … x_b x_a`` (+ ``n_distractors`` plain pairs) in a ``length``-token haystack.

    Bindings sit in non-adjacent 2-token slots (one filler token at least between two bindings); the
    second binding of a chain always comes after its first. Question ``x_b``, answer ``[x_a, v]``.
    """
    n_bind = 2 * n_chains + n_distractors
    n_keys = 2 * n_chains + n_distractors
    n_slots = (length - 1) // 3  # slot i covers positions 1 + 3i, 2 + 3i (3 + 3i stays filler)
    if n_chains < 1 or n_distractors < 0:
        raise TaskConfigError(
            f"need n_chains >= 1 and n_distractors >= 0, got {n_chains}, {n_distractors}"
        )
    if n_bind > n_slots:
        raise TaskConfigError(
            f"length {length} holds {n_slots} bindings, {n_bind} requested "
            f"({n_chains} chains x 2 + {n_distractors} distractors)"
        )
    if n_keys > vocab.n_keys:
        raise TaskConfigError(f"{n_keys} distinct keys needed, the vocabulary has {vocab.n_keys}")
    ctx = vocab.filler0 + torch.randint(0, vocab.n_filler, (length,), generator=gen)
    ctx[0] = vocab.bos
    keys = (vocab.key0 + torch.randperm(vocab.n_keys, generator=gen)[:n_keys]).tolist()
    values = (vocab.value0 + torch.randint(0, vocab.n_values, (n_bind,), generator=gen)).tolist()
    starts = (1 + 3 * torch.randperm(n_slots, generator=gen)[:n_bind].sort().values).tolist()
    # assign slots: chain c takes two slots in order (first binding earlier), distractors the rest
    order = torch.randperm(n_bind, generator=gen).tolist()
    questions, answers, bindings = [], [], []
    for c in range(n_chains):
        s1, s2 = sorted((starts[order[2 * c]], starts[order[2 * c + 1]]))
        xa, xb, v = keys[2 * c], keys[2 * c + 1], values[c]
        bindings += [(s1, xa, v), (s2, xb, xa)]
        questions.append([xb])
        answers.append([xa, v])
    for d in range(n_distractors):
        bindings.append(
            (starts[order[2 * n_chains + d]], keys[2 * n_chains + d], values[n_chains + d])
        )
    for s, a, b in bindings:
        ctx[s], ctx[s + 1] = a, b
    needles = sorted(p for s, _, _ in bindings for p in (s, s + 1))
    return TaskSample(
        context=ctx,
        questions=questions,
        answers=answers,
        needle_positions=needles,
        meta={
            "task": "two_hop",
            "chains": [[b[0] for b in bindings[2 * c : 2 * c + 2]] for c in range(n_chains)],
        },
    )


def kv_retrieval_samples(
    n: int, length: int, n_pairs: int, n_queries: int, vocab: RecallVocab, seed: int
) -> list[TaskSample]:
    """``n`` seeded key-value retrieval samples."""
    gen = torch.Generator().manual_seed(seed)
    return [kv_retrieval_sample(length, n_pairs, n_queries, gen, vocab) for _ in range(n)]


def two_hop_samples(
    n: int, length: int, n_chains: int, vocab: RecallVocab, seed: int, n_distractors: int = 0
) -> list[TaskSample]:
    """``n`` seeded two-hop variable-tracking samples."""
    gen = torch.Generator().manual_seed(seed)
    return [two_hop_sample(length, n_chains, gen, vocab, n_distractors) for _ in range(n)]


def two_hop_training_batch(
    batch_size: int,
    length: int,
    n_chains: int,
    gen: torch.Generator,
    vocab: RecallVocab,
    n_distractors: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) (B, length + 3·n_chains): haystack, then ``x_b x_a v`` for every chain.

    Labels are -100 except at ``x_b`` (target ``x_a``) and at ``x_a`` (target ``v``): both hops supervised.
    """
    rows, labels = [], []
    for _ in range(batch_size):
        s = two_hop_sample(length, n_chains, gen, vocab, n_distractors)
        tail = [t for q, a in zip(s.questions, s.answers, strict=True) for t in (*q, *a)]
        ids = torch.cat([s.context, torch.tensor(tail)])
        lab = torch.full_like(ids, -100)
        for c, a in enumerate(s.answers):
            base = length + 3 * c
            lab[base], lab[base + 1] = a[0], a[1]
        rows.append(ids)
        labels.append(lab)
    return torch.stack(rows), torch.stack(labels)
