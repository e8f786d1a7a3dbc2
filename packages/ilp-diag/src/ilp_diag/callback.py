"""Per-sample loss trajectories during SFT (issue 19: a no-grad probe pass, not the training batches).

Losses of training batches are averaged over shuffled rows and taken mid-update, so they cannot be
attributed to samples. :class:`LossTrajectoryCallback` instead runs a no-grad teacher-forced pass over
fixed probe records (keyed by ``idx``, so shuffling and gradient accumulation cannot scramble them) every
``every_k_steps`` optimizer steps and/or at each epoch end, and records per sample: loss (mean completion
NLL), gold-token probability and correctness (every completion token is the argmax).

From the log, :func:`trajectory_summary` derives Dataset-Cartography signals (Swayamdipta et al. 2020):
``confidence`` = mean gold-token probability over probes, ``variability`` = its std; Toneva et al.
(2019) ``forget_events`` = correct → incorrect transitions; and ``loss_slope`` = least-squares slope of
the loss over the last half of probes (negative = still decreasing, i.e. under-optimised).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from transformers import TrainerCallback

from ilp_diag.errors import ConfigError
from ilp_diag.nll import token_nll
from ilp_diag.records import SampleRecord, validate_records

logger = logging.getLogger(__name__)

__all__ = ["LOG_COLUMNS", "LossTrajectoryCallback", "trajectory_summary"]

LOG_COLUMNS = ("step", "epoch", "idx", "stage_id", "loss", "gold_prob", "correct")


class LossTrajectoryCallback(TrainerCallback):
    """Probe per-sample losses every ``every_k_steps`` steps and/or at epoch end.

    Args:
        records: probe samples (usually the whole SFT set, or a fixed subset); keyed by ``idx``.
        tokenizer: the tokenizer the trainer uses (the probe tokenises as TRL SFT does).
        every_k_steps: probe every k optimizer steps (None = only at epoch ends / train begin).
        at_epoch_end: also probe at each epoch end.
        at_train_begin: also probe before the first step.
        batch_size: probe batch size.
        stage_id: tag added to each log row (for sequential SFT: the stage being trained).

    ``callback.log`` is a list of dict rows (:data:`LOG_COLUMNS`); :meth:`to_frame` returns it as a DataFrame.
    Reuse one callback across several ``Trainer`` runs (stages): steps continue from the last one logged.
    """

    def __init__(
        self,
        records: Iterable[SampleRecord | Mapping[str, Any]],
        tokenizer: Any,
        every_k_steps: int | None = None,
        at_epoch_end: bool = True,
        at_train_begin: bool = True,
        batch_size: int = 16,
        stage_id: int = 0,
    ):
        if every_k_steps is not None and every_k_steps < 1:
            raise ConfigError(f"every_k_steps must be >= 1 or None, got {every_k_steps}")
        if every_k_steps is None and not at_epoch_end:
            raise ConfigError("nothing to probe: every_k_steps is None and at_epoch_end is False")
        self.records = validate_records(records)
        self.tokenizer = tokenizer
        self.every_k_steps = every_k_steps
        self.at_epoch_end = at_epoch_end
        self.at_train_begin = at_train_begin
        self.batch_size = batch_size
        self.stage_id = stage_id
        self.log: list[dict[str, Any]] = []
        self._offset = 0  # step offset across successive trainers (stages)
        self._last_step: int | None = None

    def probe(self, model: Any, step: int, epoch: float) -> None:
        """Run the no-grad probe pass now and append one row per probe record."""
        gstep = self._offset + step
        if self._last_step == gstep and self.log:
            return  # same step already probed (e.g. k-step and epoch end coincide)
        res = token_nll(
            model,
            self.tokenizer,
            [r.prompt for r in self.records],
            [r.target for r in self.records],
            batch_size=self.batch_size,
        )
        self._last_step = gstep
        for j, r in enumerate(self.records):
            self.log.append(
                {
                    "step": gstep,
                    "epoch": float(epoch),
                    "idx": r.idx,
                    "stage_id": self.stage_id,
                    "loss": float(res.mean[j]),
                    "gold_prob": float(res.gold_prob[j]),
                    "correct": bool(res.token_acc[j] >= 1.0),
                }
            )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.log:
            self._offset = self._last_step or 0
        if self.at_train_begin and model is not None:
            self.probe(model, state.global_step, state.epoch or 0.0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_k_steps and model is not None and state.global_step % self.every_k_steps == 0:
            self.probe(model, state.global_step, state.epoch or 0.0)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.at_epoch_end and model is not None:
            self.probe(model, state.global_step, state.epoch or 0.0)

    def to_frame(self) -> pd.DataFrame:
        """The log as a DataFrame with columns :data:`LOG_COLUMNS`."""
        return pd.DataFrame(self.log, columns=list(LOG_COLUMNS))


def trajectory_summary(log: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per-``idx`` trajectory signals from a probe log.

    Returns columns ``idx, final_loss, min_loss, min_loss_step, loss_slope, confidence, variability,
    forget_events, ever_correct, final_correct, n_probes``.
    """
    df = log if isinstance(log, pd.DataFrame) else pd.DataFrame(list(log))
    missing = [c for c in ("step", "idx", "loss", "gold_prob", "correct") if c not in df.columns]
    if missing:
        raise ConfigError(f"loss log lacks columns {missing}; got {list(df.columns)}")
    rows = []
    for idx, g in df.sort_values(["idx", "step"]).groupby("idx", sort=True):
        loss = g["loss"].to_numpy(float)
        steps = g["step"].to_numpy(float)
        corr = g["correct"].to_numpy(bool)
        half = max(2, len(loss) // 2)
        ls, lt = steps[-half:], loss[-half:]
        slope = float(np.polyfit(ls, lt, 1)[0]) if len(ls) >= 2 and np.ptp(ls) > 0 else 0.0
        rows.append(
            {
                "idx": int(idx),
                "final_loss": float(loss[-1]),
                "min_loss": float(loss.min()),
                "min_loss_step": int(steps[int(loss.argmin())]),
                "loss_slope": slope,
                "confidence": float(g["gold_prob"].mean()),
                "variability": float(g["gold_prob"].std(ddof=0)),
                "forget_events": int(np.sum(corr[:-1] & ~corr[1:])),
                "ever_correct": bool(corr.any()),
                "final_correct": bool(corr[-1]),
                "n_probes": len(loss),
            }
        )
    return pd.DataFrame(rows)
