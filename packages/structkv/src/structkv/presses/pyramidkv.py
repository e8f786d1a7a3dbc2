"""PyramidKV (Cai et al., 2024): SnapKV scores with per-layer budgets shrinking linearly with depth."""

from __future__ import annotations

from dataclasses import dataclass

from structkv.errors import PressConfigError
from structkv.presses.snapkv import SnapKVPress


def pyramid_budget(
    layer: int, n_layers: int, q_len: int, compression_ratio: float, window_size: int, beta: int
) -> tuple[int, bool]:
    """(entries layer ``layer`` keeps, pyramid feasible?) — kvpress ``PyramidKVPress.get_layer_budget``.

    With K = q_len·(1 − compression_ratio) (the budget, window *not* added: kvpress's
    ``max_capacity_prompt − window_size``): min = K/β, max = 2K − min. If max ≥ q_len − w, max is clamped to
    q_len − w and min = 2K − max (the mean stays K). The pyramid is used only when
    q_len ≥ max ≥ min ≥ w; otherwise every layer keeps round(K) (the SnapKV fallback). Layer l keeps
    round(max − l·(max − min)/(L − 1)). A one-layer model always falls back (kvpress would divide by zero).
    """
    keep = q_len * (1 - compression_ratio)
    fallback = round(keep)
    min_num = keep / beta
    max_num = 2 * keep - min_num
    if max_num >= q_len - window_size:
        max_num = q_len - window_size
        min_num = 2 * keep - max_num
    if n_layers < 2 or not (q_len >= max_num >= min_num >= window_size):
        return fallback, False
    steps = (max_num - min_num) / (n_layers - 1)
    return round(max_num - layer * steps), True


@dataclass
class PyramidKVPress(SnapKVPress):
    """SnapKV scores; layer l keeps :func:`pyramid_budget` entries (kvpress formula, β = ``beta``).

    The pyramid needs min = K/β ≥ window_size, i.e. K ≥ β·w kept entries (β = 20, w = 32: K ≥ 640): below that
    kvpress, and this press, fall back to a uniform SnapKV budget round(K) — then ``stats["pyramid"]`` is False.
    """

    beta: int = 20

    def validate(self) -> None:
        super().validate()
        if self.beta < 1:
            raise PressConfigError(f"beta must be >= 1, got {self.beta}")

    def layer_budget(self, layer: int, n_layers: int, n: int) -> int:
        budget, feasible = pyramid_budget(
            layer, n_layers, n, self.compression_ratio, self.window(), self.beta
        )
        self._feasible = feasible
        return max(1, min(n, budget))

    def reset(self) -> None:
        super().reset()
        self._feasible = None

    def finish(self, stats: dict) -> None:
        super().finish(stats)
        stats["pyramid"] = getattr(self, "_feasible", None)
