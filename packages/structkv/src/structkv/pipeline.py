"""A transformers pipeline over a compressed context: ``pipe(context, question=..., press=...)``.

Importing this module registers the task ``"structkv-text-generation"``::

    import structkv.pipeline  # noqa: F401  (registers the task)
    from transformers import pipeline

    pipe = pipeline("structkv-text-generation", model="/models/Llama-3.1-8B-Instruct", device="cuda")
    press = StructKVPress(compression_ratio=0.9, prefill_budget=0.6)
    out = pipe(long_document, questions=["Who signed it?", "When?"], press=press)
    out["answers"], out["stats"]["pivot_layer"], out["stats"]["prefill_cost"]

The context is prefilled once under the press (``structkv.prefill``) and every question is answered
greedily from the same compressed cache (``structkv.generate``; the cache is trimmed back to the context
between questions), so the questions never influence what the press keeps (query-agnostic, as kvpress).
``query_aware=True`` instead prefills context + question together under the press, once per question
(the question lies in the press's observation window), then asks the question again through the
compressed cache, so every answer token reads the compressed cache (as ``structkv eval --query-aware``).
With a chat template, the context opens a user turn and each question (+ ``answer_prefix``) closes it;
without one, the prompt is the one of ``structkv eval`` (``text_tasks.records_to_samples``): the
tokenizer's own special tokens (BOS, if it adds one) + context, then ``"\\n" + question + answer_prefix``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from structkv.generation import generate, prefill
from structkv.prompts import chat_split, prompt_ids

TASK = "structkv-text-generation"


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()  # "not passed": distinct from None (press=None / max_context_length=None)
QUESTION_MODES = ("masked", "tokenwise")


class StructKVPipeline(Pipeline):
    """Context → compressed cache → answers to one or many questions, with the press's statistics.

    Parameters (at construction or per call; a call's value wins, an omitted one keeps the construction
    value, else the default): ``question`` (one string) or ``questions`` (a list; the output then has
    ``answers``), ``press`` (a ``structkv.presses.BasePress`` instance; ``None`` = full cache),
    ``answer_prefix`` (""), ``max_new_tokens`` (50), ``max_context_length`` (None; keep the *first* N
    tokens of the rendered context, see :meth:`preprocess`), ``question_mode`` (``"masked"`` per-layer
    masks, or ``"tokenwise"``), ``query_aware`` (False; True = the question is compressed with the
    context, one prefill per question).
    Output: ``{"answer" | "answers", "stats", "cache_lengths", "context_tokens"}``; with
    ``query_aware=True`` and ``questions=``, ``stats`` and ``cache_lengths`` are lists (one per question).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        question: str | None = None,
        questions: list[str] | None = None,
        answer_prefix: str = _UNSET,
        press: Any = _UNSET,
        max_new_tokens: int = _UNSET,
        max_context_length: int | None = _UNSET,
        question_mode: str = _UNSET,
        query_aware: bool = _UNSET,
        **kwargs,
    ):
        """Check the parameters actually passed and route them; omitted ones are left out (so the
        construction values survive a call) and get their defaults in preprocess/_forward/postprocess."""
        from structkv.presses.base import BasePress

        if kwargs:
            raise TypeError(f"unknown argument(s) for {TASK}: {', '.join(sorted(kwargs))}")
        if question is not None and questions is not None:
            raise ValueError("pass either question= or questions=, not both")
        pre: dict[str, Any] = {}
        fwd: dict[str, Any] = {}
        post: dict[str, Any] = {}
        if question is not None:
            if not isinstance(question, str):
                raise ValueError(f"question= must be a string, got {type(question).__name__}")
            pre["questions"], post["single"] = [question], True
        if questions is not None:
            if isinstance(questions, str) or not all(isinstance(q, str) for q in questions):
                raise ValueError("questions= must be a list of strings (use question= for one)")
            pre["questions"], post["single"] = list(questions), False
        if answer_prefix is not _UNSET:
            if not isinstance(answer_prefix, str):
                raise TypeError(
                    f"answer_prefix= must be a string, got {type(answer_prefix).__name__}"
                )
            pre["answer_prefix"] = answer_prefix
        if max_context_length is not _UNSET:
            if max_context_length is not None and max_context_length < 1:
                raise ValueError(f"max_context_length must be >= 1, got {max_context_length}")
            pre["max_context_length"] = max_context_length
        if press is not _UNSET:
            if press is not None and not isinstance(press, BasePress):
                raise TypeError(
                    "press= must be a structkv press (BasePress instance, e.g. "
                    f"StructKVPress(compression_ratio=0.9)) or None, got {press!r}"
                )
            fwd["press"] = press
        if max_new_tokens is not _UNSET:
            if max_new_tokens < 1:
                raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
            fwd["max_new_tokens"] = max_new_tokens
        if question_mode is not _UNSET:
            if question_mode not in QUESTION_MODES:
                raise ValueError(
                    f"question_mode must be one of {', '.join(map(repr, QUESTION_MODES))}, "
                    f"got {question_mode!r}"
                )
            fwd["question_mode"] = question_mode
        if query_aware is not _UNSET:
            if not isinstance(query_aware, bool):
                raise TypeError(f"query_aware= must be a bool, got {query_aware!r}")
            fwd["query_aware"] = query_aware
        return pre, fwd, post

    def _render(self, context: str) -> tuple[str, str]:
        """Chat-template path: (context text, suffix closing every question) of one user turn."""
        return chat_split(self.tokenizer, context)

    def preprocess(self, context, questions=None, answer_prefix="", max_context_length=None):
        """Token ids of the context and of each question (closing suffix and answer prefix included).

        ``max_context_length`` keeps the *first* N tokens of the rendered context (BOS / chat-template
        header included; the question and the template's closing tail are appended after the cut).
        ``records_to_samples`` (``structkv eval``) keeps the *last* N instead; the pipeline keeps the
        head because its context ids start with the prompt format (BOS, ``<|im_start|>user``...) that a
        left cut would remove, leaving a prompt that no longer opens like the model's input format.
        """
        if not isinstance(context, str) or not context.strip():
            raise ValueError("the context must be a non-empty string")
        questions = [""] if questions is None else questions
        ids, qids = prompt_ids(self.tokenizer, context, questions, answer_prefix)
        if max_context_length is not None:
            ids = ids[:max_context_length]
        return {
            "context_ids": torch.tensor([ids], dtype=torch.long),
            "question_ids": [torch.tensor([q], dtype=torch.long) for q in qids],
        }

    def _forward(
        self, inputs, press=None, max_new_tokens=50, question_mode="masked", query_aware=False
    ):
        ctx = inputs["context_ids"]
        eos = self.tokenizer.eos_token_id
        answers, stats, lengths = [], [], []
        result = None if query_aware else prefill(self.model, ctx, press)
        for q in inputs["question_ids"]:
            if query_aware:  # the question is compressed with the context (evaluate_method's way)
                result = prefill(self.model, torch.cat([ctx, q], dim=1), press)
                stats.append(_plain_stats(result))
                lengths.append(list(result.cache_lengths))
            out = generate(  # query-aware: the question is asked again through the compressed cache
                self.model,
                result,
                q if q.shape[1] else None,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                question_mode=question_mode,
            )
            answers.append(out[0])
        if not query_aware:
            stats, lengths = _plain_stats(result), list(result.cache_lengths)
        return {
            "answers": answers,
            "stats": stats,
            "cache_lengths": lengths,
            "context_tokens": int(ctx.shape[1]),
            "per_question": query_aware,
        }

    def postprocess(self, outputs, single=True):
        eos = self.tokenizer.eos_token_id
        texts = []
        for ids in outputs["answers"]:
            ids = ids.tolist()
            if eos is not None and eos in ids:
                ids = ids[: ids.index(eos)]
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
        out = {k: v for k, v in outputs.items() if k not in ("answers", "per_question")}
        if single and outputs["per_question"]:
            out["stats"], out["cache_lengths"] = out["stats"][0], out["cache_lengths"][0]
        return {"answer": texts[0], **out} if single else {"answers": texts, **out}


def _plain_stats(result) -> dict:
    return {k: v for k, v in result.stats.items() if not isinstance(v, torch.Tensor)}


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=StructKVPipeline, pt_model=AutoModelForCausalLM
)
