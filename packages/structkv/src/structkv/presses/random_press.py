"""RandomPress: keep a seeded uniformly random subset (an accuracy floor for a KV budget)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from structkv.centrality import protected_mask
from structkv.errors import PressConfigError
from structkv.presses.scorer import ScorerPress


@dataclass
class ProtectedScorerPress(ScorerPress):
    """A scorer that always keeps ``n_sink`` attention sinks and the last ``window_size`` tokens."""

    n_sink: int = 4
    window_size: int = 8

    def validate(self) -> None:
        super().validate()
        if self.n_sink < 0 or self.window_size < 0:
            raise PressConfigError(
                f"n_sink and window_size must be >= 0, got {self.n_sink} and {self.window_size}"
            )

    def protected(self, n: int, device=None) -> torch.Tensor:
        """Bool (n,): the sink and window positions."""
        return protected_mask(n, self.n_sink, self.window_size, device)


@dataclass
class RandomPress(ProtectedScorerPress):
    """Keep ``n_sink`` sinks + the last ``window_size`` tokens + a uniformly random rest, M per layer and head.

    The choice is drawn independently for every layer and KV head from a generator seeded with
    ``seed`` and the layer index, so one press (or two with the same seed) gives the same cache on the
    same input, whatever was run before. A selection that any informed press should beat.
    """

    compression_ratio: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise PressConfigError(f"seed must be an int, got {type(self.seed).__name__}")

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        b, h, n, _ = keys.shape
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(module.layer_idx))
        s = torch.rand(b, h, n, generator=gen).to(keys.device)
        return s.masked_fill(self.protected(n, keys.device), 2.0)
