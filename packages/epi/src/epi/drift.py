"""Importance drift during ordinary SFT (the paper's motivating observation, spec §4.2).

Trains without isolation and records the top-p set of the layer-normalised importance EMA every
``interval`` optimizer steps; reports the Jaccard overlap of successive sets and of each set with the first.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from epi.config import EPIConfig
from epi.mask import IsolationMask, top_p_global, top_p_per_layer
from epi.tracker import ParameterImportanceTracker, select_parameters

__all__ = ["DriftCallback"]


class DriftCallback(TrainerCallback):
    """Measure only: tracks the importance EMA on every optimizer step (after clipping) and snapshots the
    top-p mask every ``config.update_interval`` steps; nothing is frozen.

    After training, :attr:`records` holds ``{"step", "jaccard_prev", "jaccard_first", "density"}`` rows.
    """

    def __init__(self, config: EPIConfig) -> None:
        self.config = config
        self.tracker: ParameterImportanceTracker | None = None
        self.first: IsolationMask | None = None
        self.prev: IsolationMask | None = None
        self.records: list[dict[str, float]] = []

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any
    ) -> None:
        self.tracker = ParameterImportanceTracker(
            select_parameters(model, self.config), self.config
        )

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        assert self.tracker is not None
        self.tracker.accumulate(None)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        assert self.tracker is not None
        if state.global_step % self.config.update_interval:
            return
        fn = top_p_global if self.config.selection == "global" else top_p_per_layer
        with torch.no_grad():
            mask = IsolationMask(fn(self.tracker.normalized(None), self.config.isolation_ratio))
        if self.first is None:
            self.first = mask
        self.records.append(
            {
                "step": float(state.global_step),
                "jaccard_prev": mask.jaccard(self.prev) if self.prev is not None else 1.0,
                "jaccard_first": mask.jaccard(self.first),
                "density": mask.density(),
            }
        )
        self.prev = mask
