"""``EPISFTTrainer``: TRL's ``SFTTrainer`` with per-task evolving parameter isolation."""

from __future__ import annotations

from trl import SFTTrainer

from epi.trainer import EPITrainerMixin

__all__ = ["EPISFTTrainer"]


class EPISFTTrainer(EPITrainerMixin, SFTTrainer):
    """TRL ``SFTTrainer`` + :class:`~epi.trainer.EPITrainerMixin` (TRL's collator drops ``task_id``; the mixin
    wraps it so the id survives)."""
