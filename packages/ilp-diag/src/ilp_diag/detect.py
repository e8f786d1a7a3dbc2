"""Detection of unlearned training samples (spec §2.1; issue 19: criteria greedy / graded / pass@n).

Each training input x_i is re-prompted to the SFT model: one greedy completion (k = 0) and ``n`` samples
at ``temperature``. With J the judge,

* ``greedy_ok``  = J(ŷ_0, y_i) ≥ 0.5
* ``pass_at_n``  = 1[∃ k ∈ 0..n : J(ŷ_k, y_i) ≥ 0.5]
* ``learn_score``= (1/n) Σ_{k=1..n} J(ŷ_k, y_i)        (≈ pass@1)
* ``best_score`` = max_k J(ŷ_k, y_i)                    (Best-of-N)

Criteria for "unlearned": ``greedy`` (greedy wrong), ``graded`` (greedy wrong and learn_score < 0.5;
default), ``pass@n`` (no sample right). pass@n hides conflicting near-duplicates: a model that learned
"A" and "B" for the same prompt hits both by sampling, so only ``graded`` flags them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ilp_diag.errors import ConfigError
from ilp_diag.judges import Judge, check_score
from ilp_diag.records import SampleRecord, validate_records
from papercore.generation import GenerationBackend, SamplingConfig

logger = logging.getLogger(__name__)

__all__ = ["CRITERIA", "Criterion", "detect_unlearned", "unlearned_mask"]

Criterion = Literal["greedy", "graded", "pass@n"]
CRITERIA: tuple[str, ...] = ("greedy", "graded", "pass@n")


def unlearned_mask(df: pd.DataFrame, criterion: str = "graded") -> pd.Series:
    """Boolean "unlearned" column from detection columns under ``criterion`` (see module doc)."""
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    if criterion == "greedy":
        return ~df["greedy_ok"].astype(bool)
    if criterion == "pass@n":
        return ~df["pass_at_n"].astype(bool)
    return (~df["greedy_ok"].astype(bool)) & (df["learn_score"] < 0.5)


def detect_unlearned(
    backend: GenerationBackend,
    records: Iterable[SampleRecord | Mapping[str, Any]],
    judge: Judge,
    n: int = 8,
    temperature: float = 0.7,
    criterion: Criterion = "graded",
    *,
    max_new_tokens: int | None = None,
    seed: int = 0,
    stop: Sequence[str] = (),
    keep_completions: bool = False,
) -> pd.DataFrame:
    """Re-prompt ``backend`` with each training input and judge its completions against the target.

    Args:
        backend: a papercore generation backend (``make_backend("transformers", model=..., tokenizer=...)``).
        records: training samples (validated: unique idx, non-empty targets).
        judge: ``judge(pred, target) -> float`` in [0, 1]; scores ≥ 0.5 count as correct.
        n: samples per prompt at ``temperature`` (plus one greedy completion).
        temperature: sampling temperature (> 0; 0 collapses pass@n to greedy and warns).
        criterion: ``"greedy"`` | ``"graded"`` | ``"pass@n"`` (sets the ``unlearned`` column).
        max_new_tokens: generation budget; default ``1.5·len(longest target tokens) + 32`` when the
            backend exposes a tokenizer, else 128.
        seed: sampling seed (recorded in ``df.attrs``).
        stop: stop strings passed to the backend.
        keep_completions: add ``greedy`` and ``samples`` text columns.

    Returns:
        DataFrame, one row per record in input order: ``idx, stage_id, task, greedy_ok, pass_at_n,
        learn_score, best_score, unlearned``; ``df.attrs["generation"]`` holds the settings.
    """
    if criterion not in CRITERIA:
        raise ConfigError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0 and n > 1:
        logger.warning(
            "temperature 0 with n=%d: all samples equal the greedy one; pass@n collapses to greedy",
            n,
        )
    recs = validate_records(records)
    if max_new_tokens is None:
        tok = getattr(backend, "tokenizer", None)
        if tok is not None:
            longest = max(len(tok(r.target, add_special_tokens=False)["input_ids"]) for r in recs)
            max_new_tokens = math.ceil(1.5 * longest) + 32
        else:
            max_new_tokens = 128
    prompts = [r.prompt for r in recs]
    greedy = backend.generate(
        prompts,
        SamplingConfig(n=1, temperature=0.0, max_new_tokens=max_new_tokens, stop=tuple(stop)),
    )
    sampled = backend.generate(
        prompts,
        SamplingConfig(
            n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, stop=tuple(stop)
        ),
    )
    if len(greedy) != len(recs) or len(sampled) != len(recs):
        raise RuntimeError(
            f"backend returned {len(greedy)}/{len(sampled)} result lists for {len(recs)} prompts"
        )
    rows = []
    for r, g, s in zip(recs, greedy, sampled, strict=True):
        if len(s) != n:
            raise RuntimeError(f"backend returned {len(s)} samples for idx={r.idx}; expected n={n}")
        g_text = g[0].text
        g_score = check_score(judge(g_text, r.target), g_text, r.target)
        s_scores = np.array([check_score(judge(c.text, r.target), c.text, r.target) for c in s])
        row = {
            "idx": r.idx,
            "stage_id": r.stage_id,
            "task": r.task,
            "greedy_ok": bool(g_score >= 0.5),
            "pass_at_n": bool(g_score >= 0.5 or (s_scores >= 0.5).any()),
            "learn_score": float(s_scores.mean()),
            "best_score": float(max(g_score, s_scores.max())),
        }
        if keep_completions:
            row["greedy"] = g_text
            row["samples"] = [c.text for c in s]
        rows.append(row)
    df = pd.DataFrame(rows)
    df["unlearned"] = unlearned_mask(df, criterion)
    df.attrs["generation"] = {
        "n": n,
        "temperature": temperature,
        "criterion": criterion,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "judge": repr(judge),
    }
    logger.info("ILP rate (%s): %.3f of %d samples", criterion, df["unlearned"].mean(), len(df))
    return df
