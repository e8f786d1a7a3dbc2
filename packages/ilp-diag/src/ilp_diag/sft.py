"""SFT with TRL's ``SFTTrainer`` on prompt–completion records (the training side of the diagnosis)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ilp_diag.records import SampleRecord, validate_records

logger = logging.getLogger(__name__)

__all__ = ["records_dataset", "sft_train", "snapshot_model"]


def records_dataset(records: Iterable[SampleRecord | Mapping[str, Any]]) -> Any:
    """A ``datasets.Dataset`` with ``idx, prompt, completion, stage_id`` (TRL prompt–completion format)."""
    from datasets import Dataset

    recs = validate_records(records)
    return Dataset.from_dict(
        {
            "idx": [r.idx for r in recs],
            "prompt": [r.prompt for r in recs],
            "completion": [r.target for r in recs],
            "stage_id": [r.stage_id for r in recs],
        }
    )


def sft_train(
    model: Any,
    tokenizer: Any,
    train: Iterable[SampleRecord | Mapping[str, Any]] | Any,
    *,
    epochs: float = 3.0,
    lr: float = 1e-3,
    batch_size: int = 16,
    seed: int = 0,
    callbacks: Sequence[Any] = (),
    sampler: Any = None,
    output_dir: str | None = None,
    gradient_accumulation_steps: int = 1,
    **sft_kwargs: Any,
) -> Any:
    """Fine-tune ``model`` in place with ``trl.SFTTrainer`` (completion-only loss; CPU-safe config from
    ``papercore.trainer_args.training_args``) and return the trainer.

    ``train``: records or a ready ``datasets.Dataset`` (``prompt``/``completion`` columns). ``sampler``:
    a :class:`~ilp_diag.mitigate.DynamicResamplingSampler` (the trainer then uses it for the train loader).
    """
    from trl import SFTConfig, SFTTrainer

    from ilp_diag.mitigate import resampling_trainer
    from papercore.trainer_args import training_args

    ds = train if hasattr(train, "column_names") else records_dataset(train)
    out = output_dir or tempfile.mkdtemp(prefix="ilp-sft-")
    args = training_args(
        SFTConfig,
        output_dir=out,
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        logging_steps=10_000,
        save_strategy="no",
        seed=seed,
        data_seed=seed,
        completion_only_loss=True,
        max_length=None,
        disable_tqdm=True,
        **sft_kwargs,
    )
    kw: dict[str, Any] = dict(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer = (
        resampling_trainer(SFTTrainer)(resampling_sampler=sampler, **kw)
        if sampler is not None
        else SFTTrainer(**kw)
    )
    trainer.train()
    model.eval()
    return trainer


def snapshot_model(model: Any) -> Any:
    """An independent copy of ``model`` (same class and config, cloned weights), in eval mode.

    Use it for stage checkpoints instead of ``copy.deepcopy``: after ``Trainer.train()`` accelerate has
    replaced ``model.forward`` by a wrapper closing over the original model, and a deep copy keeps calling
    the original's forward (its weights), so the "checkpoint" silently follows later training.
    """
    clone = type(model)(model.config)
    clone.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    if getattr(model, "generation_config", None) is not None:
        clone.generation_config = model.generation_config
    p = next(model.parameters())
    return clone.to(device=p.device, dtype=p.dtype).eval()
