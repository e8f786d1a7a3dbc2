"""RULER-style text tasks for a real tokenizer (multi-key needle in a haystack), and JSONL datasets.

Records (built-in or from a JSONL file) have ``context``, ``question``, ``answer`` (string or list of
strings) and optional ``answer_prefix`` and ``max_new_tokens`` (the kvpress/RULER column names).
"""

from __future__ import annotations

import random
from pathlib import Path

from structkv.evaluate import EvalSample

_FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
)
_WORDS = [
    "apple",
    "river",
    "silver",
    "falcon",
    "marble",
    "orchid",
    "copper",
    "lantern",
    "meadow",
    "harbor",
    "velvet",
    "thunder",
    "cedar",
    "quartz",
    "pepper",
    "saddle",
    "glacier",
    "violet",
    "ember",
    "canyon",
]


def niah_records(
    n: int, context_tokens: int, tokenizer, n_keys: int = 4, seed: int = 0
) -> list[dict]:
    """``n`` multi-key NIAH records whose context is about ``context_tokens`` tokens long."""
    rng = random.Random(seed)
    filler_len = max(1, len(tokenizer(_FILLER, add_special_tokens=False)["input_ids"]))
    reps = max(1, context_tokens // filler_len)
    out = []
    for _ in range(n):
        keys = rng.sample(_WORDS, n_keys)
        values = [str(rng.randint(100000, 999999)) for _ in keys]
        chunks = [_FILLER] * reps
        for k, v in zip(keys, values, strict=True):
            chunks.insert(rng.randint(0, len(chunks)), f"The special magic number for {k} is {v}. ")
        i = rng.randrange(n_keys)
        out.append(
            {
                "context": "".join(chunks),
                "question": f"What is the special magic number for {keys[i]}?",
                "answer_prefix": f" Answer: The special magic number for {keys[i]} is",
                "answer": values[i],
                "max_new_tokens": 8,
            }
        )
    return out


def load_records(path: str | Path) -> list[dict]:
    """Records from a JSONL file (LongBench/RULER exported with context/question/answer columns)."""
    from papercore.io import read_jsonl

    return read_jsonl(path, required=["context", "question", "answer"])


def plain_context_ids(tokenizer, context: str) -> list[int]:
    """A context as a plain prompt (no chat template): the tokenizer's own special tokens (its BOS, if it
    adds one) then the text. Shared by :func:`records_to_samples` (``structkv eval``) and the pipeline."""
    return tokenizer(context, add_special_tokens=True)["input_ids"]


def plain_question_ids(tokenizer, question: str, answer_prefix: str = "") -> list[int]:
    """The part of a plain prompt after the context: a newline, the question, the answer prefix."""
    return tokenizer("\n" + question + answer_prefix, add_special_tokens=False)["input_ids"]


def records_to_samples(
    records: list[dict], tokenizer, max_context_tokens: int | None = None
) -> list[EvalSample]:
    """Tokenise records; answers are matched as strings in the decoded greedy output.

    ``max_context_tokens`` keeps the *last* N context tokens (the end of the haystack, next to the
    question; a BOS is then cut off). ``StructKVPipeline``'s ``max_context_length`` keeps the first N.
    """
    from structkv.evaluate import records_to_eval_samples

    return records_to_eval_samples(
        records, tokenizer, chat_template=False, max_context_tokens=max_context_tokens
    )
