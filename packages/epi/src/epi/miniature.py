"""The sequential A → B lookup-table protocol in miniature (bench and demo; spec §4.3 [inferred]).

Task A maps ``n_keys`` keys to random values; task B maps ``n_keys`` keys to random values, a fraction
``conflict`` of its keys being A's keys with *different* values (the rest are new keys). Inputs carry a task
tag. A small MLP (task embedding + key embedding → hidden → value logits) is trained on A, then on B;
old-task (A) accuracy is measured every ``eval_every`` steps during B.

Methods during B (all with the same seed, data and schedule):

* ``plain``: plain fine-tuning on B;
* ``random``: :class:`~epi.isolation.RandomIsolation`, ratio p, fixed during B;
* ``static``: :class:`~epi.isolation.StaticIsolation`: the top-p mask of A's importance EMA (gathered during A),
  built once at the end of A and frozen (CPI-FT style);
* ``epi``: :class:`~epi.isolation.EvolvingIsolation`: the same mask at the end of A, then every
  ``update_interval`` B steps the old-task importance is refreshed from a gradient on A's prompts labelled
  by the end-of-A model's own predictions (no stored labels, no update on them) and the mask rebuilt
  (protect emerging, release stale);
* ``replay``: plain fine-tuning on B with ``replay`` true A examples appended to each B batch, drawn from a
  buffer of ``replay`` stored examples (tiny replay, reference);
* ``replay_prompts``: the same mixing, but drawn from *all* A prompts labelled by the end-of-A model — the
  old-task information EPI's refresh uses, spent on training instead (a ceiling-style reference).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from epi.config import EPIConfig
from epi.isolation import EvolvingIsolation, RandomIsolation, StaticIsolation, wrap_optimizer

__all__ = ["METHODS", "LookupMLP", "SequentialSettings", "lookup_tasks", "run_sequential"]

METHODS = ("plain", "random", "static", "epi", "replay", "replay_prompts")


@dataclass(frozen=True)
class SequentialSettings:
    """Defaults [inferred]: chosen so that plain fine-tuning on B clearly forgets A within ~1 s per run."""

    n_keys: int = 64
    n_values: int = 32
    conflict: float = 1.0
    isolation_ratio: float = 0.3
    steps_a: int = 300
    steps_b: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    hidden: int = 128
    d_task: int = 16
    d_key: int = 32
    update_interval: int = 10
    ema_beta: float = 0.9
    eval_every: int = 10
    replay: int = 4


class LookupMLP(nn.Module):
    """task tag + key → value logits: ``fc2(relu(fc1([E_task[t]; E_key[k]])))``."""

    def __init__(
        self, n_tasks: int, n_keys: int, n_values: int, d_task: int, d_key: int, hidden: int
    ) -> None:
        super().__init__()
        self.task_emb = nn.Embedding(n_tasks, d_task)
        self.key_emb = nn.Embedding(n_keys, d_key)
        self.fc1 = nn.Linear(d_task + d_key, hidden)
        self.fc2 = nn.Linear(hidden, n_values)

    def forward(self, task: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.task_emb(task), self.key_emb(key)], dim=-1)
        return self.fc2(torch.relu(self.fc1(h)))


def lookup_tasks(s: SequentialSettings, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """``{"A": {"task", "key", "value"}, "B": {...}}`` (one row per key)."""
    g = torch.Generator().manual_seed(seed)
    n = s.n_keys
    n_shared = round(s.conflict * n)
    keys_a = torch.arange(n)
    keys_b = torch.cat(
        [torch.randperm(n, generator=g)[:n_shared], torch.arange(n, 2 * n - n_shared)]
    )
    val_a = torch.randint(0, s.n_values, (n,), generator=g)
    val_b = torch.randint(0, s.n_values, (n,), generator=g)
    for i in range(n_shared):  # shared keys get a different value in B
        k = int(keys_b[i])
        if val_b[i] == val_a[k]:
            val_b[i] = (val_a[k] + 1) % s.n_values
    return {
        "A": {"task": torch.zeros(n, dtype=torch.long), "key": keys_a, "value": val_a},
        "B": {"task": torch.ones(n, dtype=torch.long), "key": keys_b, "value": val_b},
    }


def _acc(model: nn.Module, d: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float((model(d["task"], d["key"]).argmax(-1) == d["value"]).float().mean())


def _loss(model: nn.Module, d: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(d["task"][idx], d["key"][idx]), d["value"][idx])


def run_sequential(method: str, s: SequentialSettings, seed: int) -> dict[str, Any]:
    """Train A then B with ``method``; returns accuracies, the old-task curve during B and mask drift."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t0 = time.perf_counter()
    data = lookup_tasks(s, seed)
    a, b = data["A"], data["B"]
    n_keys_total = int(torch.cat([a["key"], b["key"]]).max()) + 1
    torch.manual_seed(seed)
    model = LookupMLP(2, n_keys_total, s.n_values, s.d_task, s.d_key, s.hidden)
    g = torch.Generator().manual_seed(seed + 1)
    cfg = EPIConfig(
        isolation_ratio=s.isolation_ratio,
        update_interval=10**9,  # rebuilds are driven explicitly below
        warmup_steps=10**9,
        ema_beta=s.ema_beta,
        exclude=None,
        seed=seed,
    )
    cls = {"random": RandomIsolation, "static": StaticIsolation, "epi": EvolvingIsolation}.get(
        method
    )
    iso = cls(model, cfg) if cls is not None else None
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    if iso is not None:
        wrap_optimizer(opt, iso)

    def step(loss: torch.Tensor) -> None:
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(s.steps_a):  # phase A: plain training, importance EMA tracked (capture="auto")
        step(_loss(model, a, torch.randint(0, s.n_keys, (s.batch_size,), generator=g)))
    acc_a_end = _acc(model, a)
    with torch.no_grad():
        pseudo = dict(
            a, value=model(a["task"], a["key"]).argmax(-1)
        )  # end-of-A predictions as labels
    if iso is not None:
        cfg.capture = "manual"
        iso.rebuild_mask(step=0)
    replay_idx = torch.randperm(s.n_keys, generator=g)[: s.replay]
    curve_a, curve_b, steps = [acc_a_end], [_acc(model, b)], [0]
    for t in range(1, s.steps_b + 1):
        if method == "epi" and t % s.update_interval == 0:
            opt.zero_grad()
            _loss(model, pseudo, torch.arange(s.n_keys)).backward()
            iso.after_backward()  # type: ignore[union-attr]
            opt.zero_grad()
            iso.rebuild_mask(step=t)  # type: ignore[union-attr]
        idx = torch.randint(0, s.n_keys, (s.batch_size,), generator=g)
        loss = _loss(model, b, idx)
        if method == "replay":
            r = replay_idx[torch.randint(0, s.replay, (s.replay,), generator=g)]
            loss = (loss * s.batch_size + _loss(model, a, r) * s.replay) / (s.batch_size + s.replay)
        elif method == "replay_prompts":
            r = torch.randint(0, s.n_keys, (s.replay,), generator=g)
            loss = (loss * s.batch_size + _loss(model, pseudo, r) * s.replay) / (
                s.batch_size + s.replay
            )
        step(loss)
        if t % s.eval_every == 0:
            curve_a.append(_acc(model, a))
            curve_b.append(_acc(model, b))
            steps.append(t)
    return {
        "method": method,
        "seed": seed,
        "settings": asdict(s),
        "acc_a_end_of_a": acc_a_end,
        "mean_old_acc_during_b": sum(curve_a[1:]) / max(1, len(curve_a) - 1),
        "final_old_acc": curve_a[-1],
        "final_new_acc": curve_b[-1],
        "curve_steps": steps,
        "curve_old": curve_a,
        "curve_new": curve_b,
        "jaccard": [h["jaccard"] for h in iso.history[1:]] if iso is not None else [],
        "density": iso.mask.density() if iso is not None else 0.0,
        "expected_isolated": math.ceil(s.isolation_ratio * iso.tracker.numel)
        if iso is not None
        else 0,
        "seconds": time.perf_counter() - t0,
    }
