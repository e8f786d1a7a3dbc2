"""Targeted mitigations as dataset / trainer pieces (spec §2.4) and their evaluation as interventions.

* C1 → :func:`knowledge_injection_dataset` (continued-pre-training corpus of supporting text)
* C2 → :func:`upweight` (duplicate the conflicting samples ×factor) or relabel/drop by the user
* C3 → :func:`resolve_inconsistencies` (majority relabel / drop minority within near-duplicate clusters)
* C4 → :func:`replay_mixture` (mix ``ratio`` of earlier-stage rows into later stages)
* C5 → :class:`DynamicResamplingSampler` (per-epoch weights w_i ∝ (1 + α·loss_i)^γ), plugged into any
  ``Trainer`` through :func:`resampling_trainer` (overrides ``_get_train_sampler``)

:func:`random_upweight` builds the equal-compute random control, :func:`evaluate_intervention` compares.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ilp_diag.errors import ConfigError, SignalsError
from ilp_diag.judges import normalize_answer
from ilp_diag.records import SampleRecord, validate_records
from ilp_diag.signals import near_duplicate_clusters

logger = logging.getLogger(__name__)

__all__ = [
    "DynamicResamplingSampler",
    "evaluate_intervention",
    "knowledge_injection_dataset",
    "loss_weights",
    "random_upweight",
    "replay_mixture",
    "resampling_trainer",
    "resolve_inconsistencies",
    "upweight",
]

_WORD = re.compile(r"[A-Za-z0-9]+")
_STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "is",
        "are",
        "was",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "what",
        "which",
        "who",
        "how",
        "does",
        "do",
    ]
)


def _cause_idx(diag: pd.DataFrame, cause: str) -> set[int]:
    for col in ("idx", "causes"):
        if col not in diag.columns:
            raise SignalsError(f"diagnosis table lacks column {col!r}; run diagnose() first")
    return {
        int(i) for i, cs in zip(diag["idx"], diag["causes"], strict=True) if cause in (cs or [])
    }


def knowledge_injection_dataset(
    diag: pd.DataFrame,
    corpus: Iterable[str] | None,
    records: Sequence[SampleRecord] | None = None,
    cause: str = "missing_knowledge",
    per_sample: int = 3,
    repeats: int = 1,
) -> Any:
    """A ``datasets.Dataset`` with a ``text`` column for continued pre-training on missing knowledge.

    For every sample diagnosed with ``cause``, the ``per_sample`` corpus lines sharing most content words
    with its prompt + target are selected (ties: corpus order). With ``corpus=None`` the text is derived
    from the targets (``prompt + target``, needs ``records``). Lines are repeated ``repeats`` times.
    """
    from datasets import Dataset

    targeted = _cause_idx(diag, cause)
    texts: list[str] = []
    if corpus is None:
        if records is None:
            raise ConfigError(
                "knowledge injection without a corpus needs the records (to derive text from targets)"
            )
        texts = [f"{r.prompt}{r.target}" for r in validate_records(records) if r.idx in targeted]
    else:
        if records is None:
            raise ConfigError(
                "knowledge injection from a corpus needs the records (to match lines to samples)"
            )
        lines = [c for c in corpus if c.strip()]
        bags = [set(_WORD.findall(c.lower())) - _STOP for c in lines]
        chosen: dict[int, None] = {}
        for r in validate_records(records):
            if r.idx not in targeted:
                continue
            q = set(_WORD.findall((r.prompt + " " + r.target).lower())) - _STOP
            scored = sorted(((len(q & b), -j) for j, b in enumerate(bags) if q & b), reverse=True)[
                :per_sample
            ]
            for _, negj in scored:
                chosen[-negj] = None
        texts = [lines[j] for j in chosen]
    logger.info("knowledge injection: %d texts for %d targeted samples", len(texts), len(targeted))
    return Dataset.from_dict({"text": texts * repeats})


def resolve_inconsistencies(
    records: Iterable[SampleRecord | Mapping[str, Any]],
    diag: pd.DataFrame | None = None,
    strategy: str = "majority",
    dup_threshold: float = 0.9,
    embedder: Any = "hash",
) -> list[SampleRecord]:
    """Consistency repair within near-duplicate prompt clusters (spec C3).

    ``strategy``: ``"majority"`` relabels every member with the cluster's majority target (ties → the
    target of the lowest idx); ``"drop_minority"`` drops members whose target is not the majority;
    ``"drop_all"`` drops conflicting clusters entirely. With ``diag``, only clusters containing a sample
    diagnosed ``data_inconsistency`` are touched.
    """
    if strategy not in ("majority", "drop_minority", "drop_all"):
        raise ConfigError(
            f"strategy must be 'majority', 'drop_minority' or 'drop_all', got {strategy!r}"
        )
    recs = validate_records(records)
    targeted = _cause_idx(diag, "data_inconsistency") if diag is not None else None
    keep: list[SampleRecord | None] = list(recs)
    for cl in near_duplicate_clusters(recs, embedder, dup_threshold):
        members = [recs[i] for i in cl]
        norm = [normalize_answer(m.target) for m in members]
        if len(set(norm)) < 2 or (targeted is not None and not targeted & {m.idx for m in members}):
            continue
        counts = Counter(norm)
        top = max(counts.values())
        winners = {t for t, c in counts.items() if c == top}
        order = sorted(range(len(members)), key=lambda j: members[j].idx)
        win_j = next(j for j in order if norm[j] in winners)
        for pos, m, t in zip(cl, members, norm, strict=True):
            if strategy == "drop_all":
                keep[pos] = None
            elif t != norm[win_j]:
                keep[pos] = (
                    None
                    if strategy == "drop_minority"
                    else SampleRecord(m.idx, m.prompt, members[win_j].target, m.stage_id, m.task)
                )
    return [r for r in keep if r is not None]


def replay_mixture(stages: Sequence[Any], ratio: float = 0.1, seed: int = 0) -> list[Any]:
    """Mix ``ratio·len(stage)`` rows drawn from all earlier stages into each later stage (spec C4 replay).

    ``stages``: ``datasets.Dataset`` objects with the same columns. Returns new datasets (stage 0 unchanged).
    """
    from datasets import concatenate_datasets

    if not 0 <= ratio <= 1:
        raise ConfigError(f"ratio must be in [0, 1], got {ratio}")
    rng = random.Random(seed)
    out = [stages[0]]
    for s in range(1, len(stages)):
        earlier = concatenate_datasets(list(stages[:s]))
        k = min(len(earlier), round(ratio * len(stages[s])))
        pick = rng.sample(range(len(earlier)), k) if k else []
        out.append(
            concatenate_datasets([stages[s], earlier.select(pick)]).shuffle(seed=seed)
            if pick
            else stages[s]
        )
    return out


def upweight(dataset: Any, idx: Iterable[int], factor: int = 4) -> Any:
    """Duplicate the rows whose ``idx`` is in ``idx`` so each appears ``factor`` times (conflict up-weighting)."""
    from datasets import concatenate_datasets

    if factor < 1:
        raise ConfigError(f"factor must be >= 1, got {factor}")
    target = set(int(i) for i in idx)
    rows = [j for j, i in enumerate(dataset["idx"]) if int(i) in target]
    if factor == 1 or not rows:
        return dataset
    return concatenate_datasets([dataset] + [dataset.select(rows)] * (factor - 1))


def random_upweight(
    dataset: Any, n: int, factor: int = 4, seed: int = 0, exclude: Iterable[int] = ()
) -> Any:
    """Equal-compute control: up-weight ``n`` random rows (not in ``exclude``) by ``factor``."""
    ex = set(int(i) for i in exclude)
    pool = [int(i) for i in dataset["idx"] if int(i) not in ex]
    pick = random.Random(seed).sample(pool, min(n, len(pool)))
    return upweight(dataset, pick, factor)


def loss_weights(
    loss: Sequence[float] | np.ndarray, alpha: float = 1.0, gamma: float = 1.0
) -> np.ndarray:
    """Sampling weights w_i ∝ (1 + α·loss_i)^γ (spec C5), normalised to sum 1."""
    arr = np.asarray(loss, dtype=float)
    if (arr < 0).any() or not np.isfinite(arr).all():
        raise ConfigError("losses must be finite and >= 0")
    w = (1.0 + alpha * arr) ** gamma
    return w / w.sum()


class DynamicResamplingSampler(torch.utils.data.Sampler[int]):
    """Weighted sampling with replacement, re-drawn each epoch from weights that can be updated.

    Args:
        weights: one non-negative weight per dataset row.
        num_samples: draws per epoch (default: dataset size — equal compute to uniform training).
        seed: the draw of epoch e uses ``seed + e``.

    Call :meth:`set_weights` (e.g. from :func:`loss_weights` of the probe losses in a callback) between epochs.
    """

    def __init__(
        self, weights: Sequence[float] | np.ndarray, num_samples: int | None = None, seed: int = 0
    ):
        self.set_weights(weights)
        self.num_samples = num_samples if num_samples is not None else len(self.weights)
        self.seed = seed
        self.epoch = 0

    def set_weights(self, weights: Sequence[float] | np.ndarray) -> None:
        w = torch.as_tensor(np.asarray(weights, dtype=float), dtype=torch.double)
        if (
            w.ndim != 1
            or len(w) == 0
            or (w < 0).any()
            or not torch.isfinite(w).all()
            or w.sum() <= 0
        ):
            raise ConfigError(
                "weights must be a non-empty 1-d array of finite non-negative values with positive sum"
            )
        self.weights = w

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        yield from torch.multinomial(
            self.weights, self.num_samples, replacement=True, generator=g
        ).tolist()

    def __len__(self) -> int:
        return self.num_samples


def resampling_trainer(trainer_cls: type) -> type:
    """A subclass of ``trainer_cls`` (``Trainer`` / TRL ``SFTTrainer``) taking ``resampling_sampler=`` and
    returning it from ``_get_train_sampler``."""

    class _Resampling(trainer_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, resampling_sampler: DynamicResamplingSampler, **kwargs: Any):
            self.resampling_sampler = resampling_sampler
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            return self.resampling_sampler

    _Resampling.__name__ = f"Resampling{trainer_cls.__name__}"
    return _Resampling


def evaluate_intervention(
    before: pd.DataFrame,
    after: pd.DataFrame,
    targeted_idx: Iterable[int],
    control_after: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """ΔILP of the targeted subset vs the rest, and vs an equal-compute control run (spec §2.4).

    ``before`` / ``after`` / ``control_after``: detection tables (``idx, unlearned``). Returns rates and
    drops (positive = fewer unlearned); ``effect_ratio`` = targeted drop / control's targeted drop.
    """
    tgt = set(int(i) for i in targeted_idx)
    if not tgt:
        raise ConfigError("targeted_idx is empty; nothing to evaluate")

    def rate(df: pd.DataFrame, inside: bool) -> float:
        m = df["idx"].astype(int).isin(tgt)
        sub = df.loc[m if inside else ~m, "unlearned"].astype(bool)
        return float(sub.mean()) if len(sub) else float("nan")

    out: dict[str, Any] = {
        "n_targeted": len(tgt),
        "targeted_before": rate(before, True),
        "targeted_after": rate(after, True),
        "rest_before": rate(before, False),
        "rest_after": rate(after, False),
        "aggregate_before": float(before["unlearned"].mean()),
        "aggregate_after": float(after["unlearned"].mean()),
    }
    out["targeted_drop"] = out["targeted_before"] - out["targeted_after"]
    out["rest_drop"] = out["rest_before"] - out["rest_after"]
    if control_after is not None:
        out["control_targeted_after"] = rate(control_after, True)
        out["control_targeted_drop"] = out["targeted_before"] - out["control_targeted_after"]
        c = out["control_targeted_drop"]
        out["effect_ratio"] = (
            out["targeted_drop"] / c
            if c > 0
            else (float("inf") if out["targeted_drop"] > 0 else float("nan"))
        )
    return out
