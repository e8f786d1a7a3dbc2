"""Prompt layout shared by ``StructKVPipeline``, ``structkv eval`` and ``bench/gpu_smoke.py``.

A prompt is split at the boundary between the context (prefilled once, compressed) and the question
(appended to the compressed cache):

* **chat template** (the tokenizer has one and ``chat_template=True``): the context opens one user turn
  and each question, followed by the template's closing tail (end of turn + assistant header) and the
  answer prefix, closes it — the rendered text of ``[{"role": "user", "content": context + question}]``
  with ``add_generation_prompt=True``, cut in two;
* **plain**: the tokenizer's own special tokens (BOS, if it adds one) + context, then
  ``"\\n" + question + answer_prefix`` (``text_tasks.plain_context_ids`` / ``plain_question_ids``).
"""

from __future__ import annotations

from structkv.synthetic.text_tasks import plain_context_ids, plain_question_ids

_MARK = "\u2063STRUCTKV-QUESTION\u2063"  # split point of the rendered chat template


def has_chat_template(tokenizer) -> bool:
    """Whether ``tokenizer`` carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_split(tokenizer, context: str) -> tuple[str, str]:
    """(context text, suffix closing every question) of one rendered user turn.

    Raises:
        ValueError: the template escapes, rewrites or drops the marker appended to the user message,
            so the rendered prompt cannot be split into context and question.
    """
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": context + _MARK}],
        add_generation_prompt=True,
        tokenize=False,
    )
    head, sep, tail = text.partition(_MARK)
    if not sep or _MARK in tail:
        raise ValueError(
            "the tokenizer's chat template altered or dropped the question marker "
            f"{_MARK!r} appended to the user message (it escapes or rewrites the content), so "
            "the rendered prompt cannot be split into context and question; set "
            "tokenizer.chat_template = None (or pass --no-chat-template) to use the plain prompt"
        )
    return head, tail


def prompt_ids(
    tokenizer,
    context: str,
    questions: list[str],
    answer_prefix: str = "",
    chat_template: bool = True,
) -> tuple[list[int], list[list[int]]]:
    """Token ids of the context and of each question (closing suffix and answer prefix included).

    ``chat_template=True`` uses the tokenizer's template when it has one (plain prompt otherwise).
    """
    if chat_template and has_chat_template(tokenizer):
        head, suffix = chat_split(tokenizer, context)
        ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        qids = [
            tokenizer(q + suffix + answer_prefix, add_special_tokens=False)["input_ids"]
            for q in questions
        ]
        return ids, qids
    return plain_context_ids(tokenizer, context), [
        plain_question_ids(tokenizer, q, answer_prefix) for q in questions
    ]
