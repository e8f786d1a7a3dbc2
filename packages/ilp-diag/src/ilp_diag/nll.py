"""Teacher-forced NLL of the targets with TRL SFT's template and completion mask.

TRL ``SFTTrainer`` on a prompt–completion dataset (non-conversational) appends the EOS token to the
completion, tokenises ``prompt`` and ``prompt + completion``, and trains on the tokens after their common
prefix (``completion_only_loss``). :func:`sft_tokenize` reproduces that, so the mean NLL here equals the
trainer's loss on a one-row batch (tested to 1e-5).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ilp_diag.errors import TokenizerMismatchError
from ilp_diag.records import SampleRecord, validate_records

logger = logging.getLogger(__name__)

__all__ = ["NLLResult", "check_same_tokenizer", "sft_tokenize", "teacher_forced_nll", "token_nll"]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def sft_tokenize(
    tokenizer: Any, prompt: str, target: str, add_eos: bool = True
) -> tuple[list[int], list[int]]:
    """``(input_ids, completion_mask)`` exactly as TRL SFT builds them for a prompt–completion row."""
    eos = tokenizer.eos_token
    completion = target if (not add_eos or eos is None or target.endswith(eos)) else target + eos
    p_ids = list(tokenizer(text=prompt)["input_ids"])
    pc_ids = list(tokenizer(text=prompt + completion)["input_ids"])
    start = _common_prefix(p_ids, pc_ids)
    return pc_ids, [0] * start + [1] * (len(pc_ids) - start)


@dataclass
class NLLResult:
    """Per-sample teacher-forced statistics over completion tokens.

    ``mean`` NLL (nats/token), ``sum`` NLL, ``n_tokens``, ``gold_prob`` (mean gold-token probability),
    ``token_acc`` (fraction of completion tokens that are the argmax), ``truncated`` (cut by max_length).
    """

    mean: np.ndarray
    sum: np.ndarray
    n_tokens: np.ndarray
    gold_prob: np.ndarray
    token_acc: np.ndarray
    truncated: np.ndarray


@torch.no_grad()
def token_nll(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    targets: list[str],
    batch_size: int = 8,
    max_length: int | None = None,
) -> NLLResult:
    """Teacher-forced per-sample statistics of ``targets`` given ``prompts`` (no grad, model in eval mode).

    Shapes: every field is a float array ``[len(prompts)]``.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"got {len(prompts)} prompts but {len(targets)} targets")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc = [sft_tokenize(tokenizer, p, t) for p, t in zip(prompts, targets, strict=True)]
    out = {k: np.zeros(len(enc)) for k in ("mean", "sum", "n", "prob", "acc", "trunc")}
    try:
        for start in range(0, len(enc), batch_size):
            chunk = enc[start : start + batch_size]
            trunc = [max_length is not None and len(ids) > max_length for ids, _ in chunk]
            if max_length is not None:
                chunk = [(ids[:max_length], m[:max_length]) for ids, m in chunk]
            width = max(len(ids) for ids, _ in chunk)
            ids_t = torch.full((len(chunk), width), pad, dtype=torch.long)
            att = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.bool)
            for i, (ids, m) in enumerate(chunk):  # right padding, as TRL's collator
                ids_t[i, : len(ids)] = torch.tensor(ids)
                att[i, : len(ids)] = 1
                mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
            logits = model(input_ids=ids_t.to(device), attention_mask=att.to(device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            gold = ids_t[:, 1:].to(device)
            lp = logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1)
            m = mask[:, 1:].to(device)
            hit = (logp.argmax(-1) == gold) & m
            cnt = m.sum(1).clamp(min=1)
            nll_sum = -(lp * m).sum(1)
            for j in range(len(chunk)):
                k = start + j
                out["sum"][k] = nll_sum[j].item()
                out["n"][k] = m[j].sum().item()
                out["mean"][k] = (nll_sum[j] / cnt[j]).item()
                out["prob"][k] = ((lp[j].exp() * m[j]).sum() / cnt[j]).item()
                out["acc"][k] = (hit[j].sum() / cnt[j]).item()
                out["trunc"][k] = float(trunc[j])
    finally:
        model.train(was_training)
    return NLLResult(
        out["mean"], out["sum"], out["n"], out["prob"], out["acc"], out["trunc"].astype(bool)
    )


def teacher_forced_nll(
    model: Any,
    tokenizer: Any,
    records: Iterable[SampleRecord | Mapping[str, Any]],
    batch_size: int = 8,
    max_length: int | None = None,
) -> np.ndarray:
    """Mean completion-token NLL (nats) per record, ``[len(records)]``, with TRL SFT's template and mask."""
    recs = validate_records(records)
    res = token_nll(
        model, tokenizer, [r.prompt for r in recs], [r.target for r in recs], batch_size, max_length
    )
    return res.mean


def check_same_tokenizer(a: Any, b: Any) -> None:
    """Raise :class:`TokenizerMismatchError` unless ``a`` and ``b`` have the same vocabulary and specials;
    warn when only their chat templates differ."""
    if a is b:
        return
    if a.get_vocab() != b.get_vocab() or a.eos_token != b.eos_token:
        raise TokenizerMismatchError(
            f"base and SFT tokenizers differ (vocab sizes {len(a)} vs {len(b)}, eos {a.eos_token!r} vs "
            f"{b.eos_token!r}); expected the same tokenizer so NLL signals are comparable"
        )
    if getattr(a, "chat_template", None) != getattr(b, "chat_template", None):
        logger.warning("base and SFT tokenizers have different chat templates")
