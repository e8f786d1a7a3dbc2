"""Student SFT with TRL's ``SFTTrainer`` on an exported prompt/completion dataset (spec 2.7).

The loss is on completion tokens only (TRL's default for prompt/completion data). Paper settings
(:data:`PAPER_SFT`): AdamW β=(0.9, 0.95), lr 2e-5, cosine, warm-up 3 %, weight decay 0, 3 epochs,
max length 2048 (effective batch 128, bf16 and ZeRO-3 are set by the launcher / machine). The config
is built with ``papercore.trainer_args.training_args`` so it is valid on the machine (bf16 off on CPU).
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

PAPER_SFT: dict[str, Any] = {
    "learning_rate": 2e-5,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,  # a float < 1 is a ratio of the total steps (transformers 5)
    "weight_decay": 0.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "num_train_epochs": 3.0,
    "max_length": 2048,
}


def sft_config(output_dir: str | os.PathLike[str], **overrides: Any):
    """``trl.SFTConfig`` with the paper's settings, ``overrides`` on top, valid on this machine."""
    from trl import SFTConfig

    from papercore.trainer_args import training_args

    kw = {**PAPER_SFT, "output_dir": str(output_dir), "save_strategy": "no", "logging_steps": 10}
    kw.update(overrides)
    return training_args(SFTConfig, **kw)


def train_sft(
    dataset: Any,
    model: Any,
    tokenizer: Any,
    output_dir: str | os.PathLike[str],
    *,
    save: bool = True,
    **config_overrides: Any,
):
    """Fine-tune ``model`` (a ``PreTrainedModel`` or a local path) on ``dataset`` (columns ``prompt``,
    ``completion``) with ``SFTTrainer``; returns the trainer (``trainer.model`` is the student).

    ``config_overrides`` go to :func:`sft_config` (e.g. ``max_steps=5``, ``per_device_train_batch_size=8``).
    """
    from trl import SFTTrainer

    missing = [c for c in ("prompt", "completion") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"the SFT dataset needs columns prompt and completion; missing {missing} in {dataset.column_names}"
        )
    if len(dataset) == 0:
        raise ValueError("the SFT dataset is empty; nothing to train on")
    if isinstance(model, (str, os.PathLike)):
        from papercore.models import load_model

        model = load_model(str(model))
    args = sft_config(output_dir, **config_overrides)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset.select_columns(["prompt", "completion"]),
        processing_class=tokenizer,
    )
    trainer.train()
    if save:
        trainer.save_model(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
    return trainer
