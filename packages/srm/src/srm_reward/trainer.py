"""Training the structural RM (spec §2.3): TRL's ``RewardTrainer`` on rendered, implicit-prompt pairs.

``L_BT(θ) = −mean log σ(RM(x_chosen) − RM(x_rejected))`` with ``x = render(p, r, SB(p, r))`` — exactly
``RewardTrainer``'s loss on a dataset whose ``chosen`` / ``rejected`` columns are the rendered strings. Branches
are frozen (two-stage). ``RewardConfig.max_length`` (1024 by default) silently drops longer pairs: the config
is built with ``max_length = renderer.max_length`` (the renderer guarantees the bound) and any pair TRL still
drops is counted in :attr:`SRMRewardTrainer.dropped_pairs` and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from trl import RewardConfig, RewardTrainer

from srm_reward.errors import PreferenceDataError

logger = logging.getLogger(__name__)

__all__ = ["SRMRewardTrainer", "reward_config"]


def reward_config(output_dir: str, *, max_length: int = 1024, **kwargs: Any) -> RewardConfig:
    """A ``RewardConfig`` valid on this machine (``bf16`` off without a bf16 accelerator, via
    ``papercore.trainer_args.training_args``), with ``max_length`` and quiet logging defaults."""
    from papercore.trainer_args import training_args

    kwargs.setdefault("logging_steps", 10)
    kwargs.setdefault("save_strategy", "no")
    kwargs.setdefault("disable_tqdm", True)
    kwargs.setdefault("remove_unused_columns", False)
    return training_args(RewardConfig, output_dir=output_dir, max_length=max_length, **kwargs)


class SRMRewardTrainer(RewardTrainer):
    """``RewardTrainer`` on rendered pairs, with the dropped-pair count.

    Build it with :meth:`from_srm` (renders the pairs through the SRM's branches, with branch dropout) or
    pass an already enriched dataset (``chosen`` / ``rejected`` rendered strings) as ``train_dataset``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ds = kwargs.get("train_dataset")
        n_in = len(ds) if ds is not None and hasattr(ds, "__len__") else None
        super().__init__(*args, **kwargs)
        self.dropped_pairs = 0 if n_in is None else n_in - len(self.train_dataset)
        if self.dropped_pairs:
            logger.warning(
                "RewardTrainer dropped %d of %d pairs longer than max_length=%s tokens",
                self.dropped_pairs,
                n_in,
                self.args.max_length,
            )
        else:
            logger.info("all %s pairs fit max_length=%s", n_in, self.args.max_length)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs["dropped_pairs"] = float(self.dropped_pairs)
        super().log(logs, start_time)

    @classmethod
    def from_srm(
        cls,
        srm: Any,
        pairs: Sequence[Mapping[str, Any]],
        *,
        output_dir: str,
        branch_dropout: float = 0.1,
        seed: int = 0,
        eval_pairs: Sequence[Mapping[str, Any]] | None = None,
        **config_kwargs: Any,
    ) -> SRMRewardTrainer:
        """Render ``pairs`` (``prompt``, ``chosen``, ``rejected``) with ``srm``'s branches (dropout
        ``branch_dropout``, seeded) and build the trainer on ``srm.reward_model``."""
        from datasets import Dataset

        if not pairs:
            raise PreferenceDataError(
                "no training pairs: expected at least one (prompt, chosen, rejected)"
            )
        rows = srm.enrich_pairs(pairs, branch_dropout=branch_dropout, seed=seed)
        train = Dataset.from_list(
            [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
        )
        evald = None
        if eval_pairs:
            er = srm.enrich_pairs(eval_pairs)
            evald = Dataset.from_list(
                [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in er]
            )
        config_kwargs.setdefault("seed", seed)
        args = reward_config(output_dir, max_length=srm.renderer.max_length, **config_kwargs)
        return cls(
            model=srm.reward_model,
            args=args,
            train_dataset=train,
            eval_dataset=evald,
            processing_class=srm.tokenizer,
        )
