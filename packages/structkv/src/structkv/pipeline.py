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
With a chat template, the context opens a user turn and each question (+ ``answer_prefix``) closes it;
without one, the context gets the BOS token and each question ends with a newline.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForCausalLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from structkv.generation import generate, prefill

TASK = "structkv-text-generation"
_MARK = "\u2063STRUCTKV-QUESTION\u2063"  # split point of the rendered chat template


class StructKVPipeline(Pipeline):
    """Context → compressed cache → answers to one or many questions, with the press's statistics.

    Call parameters: ``question`` (one string) or ``questions`` (a list; the output then has
    ``answers``), ``press`` (any structkv press; ``None`` = full cache), ``answer_prefix``,
    ``max_new_tokens`` (50), ``max_context_length`` (keep the first N context tokens),
    ``question_mode`` (``"masked"`` per-layer masks, or ``"tokenwise"``).
    Output: ``{"answer" | "answers", "stats", "cache_lengths", "context_tokens"}``.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        question: str | None = None,
        questions: list[str] | None = None,
        answer_prefix: str = "",
        press: Any = None,
        max_new_tokens: int = 50,
        max_context_length: int | None = None,
        question_mode: str = "masked",
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"unknown argument(s) for {TASK}: {', '.join(sorted(kwargs))}")
        if question is not None and questions is not None:
            raise ValueError("pass either question= or questions=, not both")
        if questions is not None and (
            isinstance(questions, str) or not all(isinstance(q, str) for q in questions)
        ):
            raise ValueError("questions= must be a list of strings (use question= for one)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if max_context_length is not None and max_context_length < 1:
            raise ValueError(f"max_context_length must be >= 1, got {max_context_length}")
        single = questions is None
        pre = {
            "questions": [question or ""] if single else list(questions),
            "answer_prefix": answer_prefix,
            "max_context_length": max_context_length,
        }
        fwd = {"press": press, "max_new_tokens": max_new_tokens, "question_mode": question_mode}
        return pre, fwd, {"single": single}

    def _render(self, context: str) -> tuple[str, str]:
        """(context text, suffix closing every question)."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": context + _MARK}],
                add_generation_prompt=True,
                tokenize=False,
            )
            head, _, tail = text.partition(_MARK)
            return head, tail
        return (tok.bos_token or "") + context, "\n"

    def preprocess(self, context, questions, answer_prefix, max_context_length):
        if not isinstance(context, str) or not context.strip():
            raise ValueError("the context must be a non-empty string")
        head, suffix = self._render(context)
        enc = self.tokenizer(head, add_special_tokens=False, return_tensors="pt")
        ids = enc["input_ids"]
        if max_context_length is not None:
            ids = ids[:, :max_context_length]
        qids = [
            self.tokenizer(
                q + suffix + answer_prefix, add_special_tokens=False, return_tensors="pt"
            )["input_ids"]
            for q in questions
        ]
        return {"context_ids": ids, "question_ids": qids}

    def _forward(self, inputs, press, max_new_tokens, question_mode):
        result = prefill(self.model, inputs["context_ids"], press)
        eos = self.tokenizer.eos_token_id
        answers = []
        for q in inputs["question_ids"]:
            out = generate(
                self.model,
                result,
                q if q.shape[1] else None,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                question_mode=question_mode,
            )
            answers.append(out[0])
        stats = {k: v for k, v in result.stats.items() if not isinstance(v, torch.Tensor)}
        return {
            "answers": answers,
            "stats": stats,
            "cache_lengths": list(result.cache_lengths),
            "context_tokens": int(inputs["context_ids"].shape[1]),
        }

    def postprocess(self, outputs, single):
        eos = self.tokenizer.eos_token_id
        texts = []
        for ids in outputs["answers"]:
            ids = ids.tolist()
            if eos is not None and eos in ids:
                ids = ids[: ids.index(eos)]
            texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
        out = {k: v for k, v in outputs.items() if k != "answers"}
        return {"answer": texts[0], **out} if single else {"answers": texts, **out}


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=StructKVPipeline, pt_model=AutoModelForCausalLM
)
