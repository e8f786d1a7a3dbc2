"""OraclePress: keep given token positions (an accuracy ceiling for a KV budget).

A press that *knows* which context positions matter (e.g. where the needles of a retrieval task are)
and keeps them, with the attention sinks and the observation window, in every layer and KV head. What
is left of the budget M = round((1 − compression_ratio)·N) goes to the most recent tokens. Its
accuracy is the ceiling any query-agnostic selection can reach at that budget on a task whose
answers live at those positions; if a task's oracle cannot reach full-cache accuracy, the task cannot
show a "≥ x× full" claim at that budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from structkv.errors import PressConfigError
from structkv.presses.random_press import ProtectedScorerPress

# score tiers (higher is kept first): given positions, then sinks and window, then recency in [0, 1)
_GIVEN, _PROTECTED = 3.0, 2.0


@dataclass
class OraclePress(ProtectedScorerPress):
    """Keep ``indices`` (context positions, 0-based) + ``n_sink`` sinks + the last ``window_size`` tokens.

    ``indices`` is one list of positions for every batch row, or a list of such lists, one per row.
    Every layer and KV head keeps M entries; given positions come first, then sinks and window, then
    the most recent other tokens. If the given positions alone exceed M, the earliest M of them are
    kept and ``stats["oracle_coverage"]`` (fraction of given positions kept, worst row) drops below 1.
    """

    compression_ratio: float = 0.0
    indices: Sequence[int] | Sequence[Sequence[int]] = field(default_factory=tuple)

    def validate(self) -> None:
        super().validate()
        raw = self.indices
        rows = raw.tolist() if isinstance(raw, torch.Tensor) else list(raw)
        rows = [r.tolist() if isinstance(r, torch.Tensor) else r for r in rows]
        per_row = bool(rows) and all(isinstance(r, Sequence) for r in rows)
        if rows and not per_row and any(isinstance(r, Sequence) for r in rows):
            raise PressConfigError(
                "indices must be a list of ints or a list of lists of ints (one per batch row), "
                f"got a mix: {rows[:3]!r}"
            )
        given = [rows] if not per_row else rows
        out = []
        for r in given:
            idx = sorted({int(i) for i in r})
            if idx and idx[0] < 0:
                raise PressConfigError(f"indices must be >= 0 context positions, got {idx[0]}")
            out.append(idx)
        self._given, self._per_row = out, per_row

    def reset(self) -> None:
        self._coverage: float | None = None

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        b, h, n, _ = keys.shape
        if self._per_row and len(self._given) != b:
            raise PressConfigError(
                f"OraclePress got indices for {len(self._given)} rows, the batch has {b}"
            )
        base = torch.arange(n, device=keys.device, dtype=torch.float32) / max(1, n)
        base = base.masked_fill(self.protected(n, keys.device), _PROTECTED)
        s = base.expand(b, n).clone()
        m = min(n, self.layer_budget(int(module.layer_idx), 1, n))
        for row in range(b):
            given = self._given[row if self._per_row else 0]
            if not given:
                continue
            if given[-1] >= n:
                raise PressConfigError(
                    f"OraclePress index {given[-1]} is outside the context of {n} tokens"
                )
            g = torch.tensor(given, device=keys.device)
            # earlier given positions rank higher, so an overfull budget keeps a prefix of them
            s[row, g] = _GIVEN + 1.0 - torch.arange(len(g), device=keys.device) / len(g)
            cov = min(1.0, m / len(g))
            self._coverage = cov if self._coverage is None else min(self._coverage, cov)
        return s[:, None].expand(b, h, n).contiguous()

    def finish(self, stats: dict) -> None:
        stats["oracle_coverage"] = 1.0 if self._coverage is None else self._coverage
