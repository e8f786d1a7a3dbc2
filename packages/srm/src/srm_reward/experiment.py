"""Helpers shared by the demo and the bench: a tiny reward model from config, train-and-evaluate loops."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from srm_reward.render import UNAVAILABLE

__all__ = ["pair_accuracy", "tiny_reward_model", "train_rm"]


def tiny_reward_model(
    tokenizer: Any, *, seed: int = 0, hidden_size: int = 64, layers: int = 2
) -> Any:
    """A randomly initialised tiny Llama ``ForSequenceClassification`` (num_labels=1) over ``tokenizer``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from papercore.testing.builders import tiny_causal_lm_config

    cfg = tiny_causal_lm_config(
        "llama",
        tokenizer=tokenizer,
        num_labels=1,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
    )
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(cfg, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def train_rm(
    srm: Any,
    pairs: Sequence[Mapping[str, Any]],
    *,
    steps: int,
    seed: int,
    lr: float = 2e-3,
    batch_size: int = 16,
    branch_dropout: float = 0.1,
) -> Any:
    """Train ``srm.reward_model`` with :class:`~srm_reward.trainer.SRMRewardTrainer` (rendered pairs)."""
    from srm_reward.trainer import SRMRewardTrainer

    with tempfile.TemporaryDirectory() as d:
        tr = SRMRewardTrainer.from_srm(
            srm,
            list(pairs),
            output_dir=d,
            branch_dropout=branch_dropout,
            seed=seed,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            logging_steps=max(1, steps),
            lr_scheduler_type="cosine",
            warmup_steps=10,
        )
        tr.train()
    srm.reward_model.eval()
    return tr


def pair_accuracy(
    srm: Any,
    pairs: Sequence[Mapping[str, Any]],
    *,
    ablate: Sequence[str] = (),
    aux: list[dict[str, str]] | None = None,
) -> dict[str, float]:
    """Pairwise accuracy overall and per ``error`` type; ``ablate``: branches set to ``UNAVAILABLE``.
    Ties (equal scores) count as half right."""
    n = len(pairs)
    prompts = [p["prompt"] for p in pairs]
    resp = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    aux = aux if aux is not None else srm.aux(prompts + prompts, resp)
    aux = [dict(a) for a in aux]
    for a in aux:
        for name in ablate:
            a[name] = UNAVAILABLE
    s = srm.score_texts(srm.render(prompts + prompts, resp, aux))
    right = np.where(s[:n] > s[n:], 1.0, np.where(s[:n] == s[n:], 0.5, 0.0))
    out = {"all": float(right.mean())}
    for err in sorted({p.get("error", "all") for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p.get("error", "all") == err]
        out[err] = float(right[idx].mean())
    return out
