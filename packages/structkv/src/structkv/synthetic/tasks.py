"""Seeded synthetic retrieval tasks over a small integer vocabulary (no tokenizer needed).

Vocabulary layout (``RecallVocab``): id 0 is BOS, then ``n_keys`` key ids, ``n_values`` value ids and
``n_filler`` filler ids. A sample is a haystack of filler tokens with ``n_pairs`` adjacent ``key value``
pairs planted at random places, followed by queries: a query is a key seen in the haystack and its answer
is the value that followed it (MQAR-style associative recall, Zoology 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from structkv.evaluate import EvalSample


@dataclass(frozen=True)
class RecallVocab:
    n_keys: int = 64
    n_values: int = 64
    n_filler: int = 64

    @property
    def bos(self) -> int:
        return 0

    @property
    def key0(self) -> int:
        return 1

    @property
    def value0(self) -> int:
        return 1 + self.n_keys

    @property
    def filler0(self) -> int:
        return 1 + self.n_keys + self.n_values

    @property
    def size(self) -> int:
        return 1 + self.n_keys + self.n_values + self.n_filler


@dataclass
class RecallSample:
    """One haystack with its queries. ``context`` holds BOS + haystack; ``queries[i]`` is answered by ``answers[i]``."""

    context: torch.Tensor  # (N,) long
    queries: list[int]
    answers: list[int]
    pair_positions: list[int]  # position of each queried key in ``context``


def make_recall_sample(
    length: int,
    n_pairs: int,
    n_queries: int,
    gen: torch.Generator,
    vocab: RecallVocab = RecallVocab(),
    mentions: int = 0,
    mention_pairs: bool = False,
) -> RecallSample:
    """A haystack of ``length`` tokens (BOS included) with ``n_pairs`` planted pairs and ``n_queries`` queries.

    ``mentions`` > 0 re-mentions every planted key up to that many times at filler positions after its
    pair (a fact referred to later in the document; fewer when the pair sits too near the end): the
    key alone, or the whole ``key value`` pair with ``mention_pairs``. The trained model's induction
    heads attend from each mention back to the pair, which gives the pair in-degree during prefill.
    """
    if 2 * n_pairs + 1 > length:
        raise ValueError(f"length {length} cannot hold {n_pairs} pairs")
    if n_queries > n_pairs:
        raise ValueError(f"n_queries {n_queries} exceeds n_pairs {n_pairs}")
    ctx = vocab.filler0 + torch.randint(0, vocab.n_filler, (length,), generator=gen)
    ctx[0] = vocab.bos
    keys = vocab.key0 + torch.randperm(vocab.n_keys, generator=gen)[:n_pairs]
    values = vocab.value0 + torch.randint(0, vocab.n_values, (n_pairs,), generator=gen)
    # non-overlapping slots of width 2 in positions 1..length-1
    n_slots = (length - 1) // 2
    slots = torch.randperm(n_slots, generator=gen)[:n_pairs].sort().values
    starts = 1 + 2 * slots
    for k, v, s in zip(keys.tolist(), values.tolist(), starts.tolist(), strict=True):
        ctx[s] = k
        ctx[s + 1] = v
    order = torch.randperm(n_pairs, generator=gen)[:n_queries].tolist()
    if mentions:
        taken = torch.zeros(length + 1, dtype=torch.bool)
        taken[0] = taken[length] = True
        taken[starts] = True
        taken[starts + 1] = True
        for k, v, s in zip(keys.tolist(), values.tolist(), starts.tolist(), strict=True):
            # a free position p after the pair (p + 1 free too when the mention is a pair)
            ok = ~taken[s + 2 : length] & (~taken[s + 3 : length + 1] if mention_pairs else True)
            free = ok.nonzero().flatten() + s + 2
            pos = free[torch.randperm(len(free), generator=gen)[:mentions]]
            for q in pos.tolist():
                if taken[q] or (mention_pairs and taken[q + 1]):
                    continue  # overlaps a mention placed just before
                ctx[q] = k
                taken[q] = True
                if mention_pairs:
                    ctx[q + 1] = v
                    taken[q + 1] = True
    return RecallSample(
        context=ctx,
        queries=[int(keys[i]) for i in order],
        answers=[int(values[i]) for i in order],
        pair_positions=[int(starts[i]) for i in order],
    )


def training_batch(
    batch_size: int,
    length: int,
    n_pairs: int,
    gen: torch.Generator,
    vocab: RecallVocab = RecallVocab(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of shape (B, length + 2·n_pairs): haystack then every pair queried once.

    Labels are -100 everywhere except at each query key, whose target is its value (loss on every
    query's answer, MQAR-style).
    """
    rows, labels = [], []
    for _ in range(batch_size):
        s = make_recall_sample(length, n_pairs, n_pairs, gen, vocab)
        q = torch.tensor([t for pair in zip(s.queries, s.answers, strict=True) for t in pair])
        ids = torch.cat([s.context, q])
        lab = torch.full_like(ids, -100)
        # position of each query key predicts the next token (its value)
        for i, a in enumerate(s.answers):
            lab[length + 2 * i] = a
        rows.append(ids)
        labels.append(lab)
    return torch.stack(rows), torch.stack(labels)


def recall_samples(
    n: int, length: int, n_pairs: int, n_queries: int, vocab, seed: int = 0, mentions: int = 0
) -> list[EvalSample]:
    """Associative-recall samples (integer vocabulary) for the tiny trained model."""
    from structkv.evaluate import EvalSample

    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        s = make_recall_sample(length, n_pairs, n_queries, gen, vocab, mentions)
        out.append(
            EvalSample(
                context_ids=s.context,
                question_ids=[torch.tensor([q]) for q in s.queries],
                answers=[[a] for a in s.answers],
                max_new_tokens=1,
                meta={"pair_positions": s.pair_positions},
            )
        )
    return out
