"""GemFilter (Shi et al., 2024): pick tokens with an early layer's last-query attention, then re-run.

Pass 1 runs layers 0..r (r = ``filter_layer``) over all N tokens and stops early (a private exception
raised from layer r's attention hook); the last query row's attention, summed over heads, picks
k = round((1 − compression_ratio)·N) tokens (the last ``window_size`` always kept). Pass 2 runs the full
model over the k selected tokens into the caller's empty cache, with re-indexed positions 0..k−1 (the
paper) or, with ``keep_positions=True``, their original positions. Cost: ((r+1)·N + L·k) / (L·N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from structkv._compat import cache_from_kwargs, cache_kwarg_name
from structkv.errors import PressConfigError
from structkv.presses.base import BasePress, _Run
from structkv.presses.propagating import topk_protected


class _StopPrefill(Exception):
    """Raised after GemFilter's filter layer to end pass 1."""


@dataclass
class GemFilterPress(BasePress):
    compression_ratio: float = 0.9
    filter_layer: int | float = 0.4
    window_size: int = 1
    keep_positions: bool = False
    use_triton: Literal["auto"] | bool = "auto"

    def validate(self) -> None:
        super().validate()
        if isinstance(self.filter_layer, float) and not 0 < self.filter_layer < 1:
            raise PressConfigError(
                f"a fractional filter_layer must be in (0, 1), got {self.filter_layer}"
            )

    def filter_index(self, n_layers: int) -> int:
        r = (
            int(self.filter_layer * n_layers)
            if isinstance(self.filter_layer, float)
            else int(self.filter_layer)
        )
        if not 0 <= r <= n_layers - 1:
            raise PressConfigError(
                f"filter_layer resolves to {r}; it must lie in [0, {n_layers - 1}]"
            )
        return r

    def reset(self) -> None:
        if not getattr(self, "_in_pass1", False):
            self._sel = None
            self._pass2 = False

    def begin(self, run: _Run) -> None:
        self._r = self.filter_index(run.n_layers)
        self._k = self.n_kept(run.n)

    def _rewrite_model_inputs(self, module, args, kwargs):
        if getattr(self, "_in_pass1", False) or self._run is None or self._run.skipped:
            return None
        from transformers import DynamicCache

        outer = self._run
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise PressConfigError(
                "GemFilterPress needs input_ids (inputs_embeds are not supported)"
            )
        n = ids.shape[1]
        pos = kwargs.get("position_ids")
        if pos is None:
            pos = torch.arange(n, device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
        self._in_pass1 = True
        try:
            module(
                input_ids=ids,
                position_ids=pos,
                use_cache=True,
                **{cache_kwarg_name(module): DynamicCache()},
            )
        except _StopPrefill:
            pass
        finally:
            self._in_pass1 = False
            self._run = outer
        sel = self._sel  # (B, k)
        self._pass2 = True
        new = {
            k: v
            for k, v in kwargs.items()
            if k not in ("input_ids", "attention_mask", "position_ids")
        }
        new["input_ids"] = ids.gather(1, sel)
        new["position_ids"] = (
            pos.gather(1, sel)
            if self.keep_positions
            else torch.arange(sel.shape[1], device=ids.device).expand_as(sel)
        )
        return (), new

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        if not self._in_pass1 or int(module.layer_idx) != self._r:
            return keys, values
        indeg, _ = self.window_scores(module, hidden_states, keys, kwargs)
        self._sel = topk_protected(indeg.mean(dim=1), self._k, 0, self.window_size)
        raise _StopPrefill

    def _attn_hook(self, module, args, kwargs, output):
        if self._in_pass1 and self._run is not None:
            cache = cache_from_kwargs(kwargs)
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            if int(module.layer_idx) == self._r:
                from structkv._compat import get_layer_kv

                self._run.cache = cache
                keys, values = get_layer_kv(cache, self._r)
                self.compress(module, hidden, keys, values, None, kwargs)
            return output
        return super()._attn_hook(module, args, kwargs, output)

    def layer_positions(self, layer: int) -> torch.Tensor:
        """Pass 2 runs every layer over the selected tokens only: their original positions (B, k)."""
        if self._pass2 and self._sel is not None:
            return self._sel
        return super().layer_positions(layer)

    def kept_indices(self, n_layers: int, cache) -> dict[int, torch.Tensor]:
        """Every layer holds the k selected tokens (original positions, B × H_kv × k); key -1: the selection."""
        out = super().kept_indices(n_layers, cache)
        if self._pass2 and self._sel is not None:
            out[-1] = self._sel
        return out

    def finish(self, stats: dict) -> None:
        if stats.get("skipped") or self._sel is None:
            return
        n, L = stats["context_length"], len(stats["tokens_per_layer"])
        k = int(self._sel.shape[1])
        stats["prefill_cost"] = ((self._r + 1) * n + sum(stats["tokens_per_layer"])) / (L * n)
        stats["filter_layer"] = self._r
        stats["pivot_layer"] = self._r
        stats["selected_indices"] = self._sel
        stats["decode_position"] = n if self.keep_positions else k
