"""Fine-tune a bi-encoder with :class:`~quadbert.losses.QuadrupletLoss` through ``SentenceTransformerTrainer``.

Everything the trainer offers comes for free: checkpoints under ``output_dir/checkpoint-*``, resume
with ``resume_from_checkpoint``, fp16/bf16, and multi-GPU / DeepSpeed / FSDP under
``accelerate launch``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quadbert.errors import TrainDataError
from quadbert.mining import QUAD_COLUMNS

logger = logging.getLogger(__name__)


def default_training_args(output_dir: str | Path, **overrides: Any):
    """``SentenceTransformerTrainingArguments`` with the spec's defaults for real scale. [inferred]

    1 epoch, batch 32, lr 2e-5, 10 % linear warmup, a checkpoint per epoch, no external loggers,
    seed 0. Any field can be overridden by keyword.
    """
    from sentence_transformers.sentence_transformer.training_args import (
        SentenceTransformerTrainingArguments,
    )

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=1,
        per_device_train_batch_size=32,
        learning_rate=2e-5,
        warmup_steps=0.1,
        save_strategy="epoch",
        logging_steps=10,
        report_to="none",
        seed=0,
    )
    kwargs.update(overrides)
    return SentenceTransformerTrainingArguments(**kwargs)


def ir_evaluator(eval_data: Any, name: str = "eval", batch_size: int = 64):
    """sentence-transformers' ``InformationRetrievalEvaluator`` on a ``RetrievalData`` (or ``(queries, corpus, qrels)``).

    Reports MRR@10, nDCG@10, Recall@10/@100 (keys like ``eval_cosine_mrr@10``).
    """
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    if isinstance(eval_data, tuple):
        queries, corpus, qrels = eval_data
    else:
        queries, corpus, qrels = eval_data.queries, eval_data.corpus, eval_data.qrels
    from papercore.retrieval import as_qrels

    relevant = {q: {d for d, r in rel.items() if r > 0} for q, rel in as_qrels(qrels).items()}
    return InformationRetrievalEvaluator(
        queries=dict(queries),
        corpus=dict(corpus),
        relevant_docs=relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 10],
        precision_recall_at_k=[10, 100],
        map_at_k=[100],
        batch_size=batch_size,
        name=name,
        write_csv=False,
    )


def as_quadruplet_dataset(train: Any):
    """The quadruplet columns, in loss order, as a ``datasets.Dataset``.

    Accepts a ``Dataset``, a dict of columns or a list of records; extra columns (ids) are dropped.
    With several hard negatives (``hard_negative_1 … _N``, from ``build_quadruplets(n_hard=N)``)
    the columns are anchor, positive, hard_negative_1 … _N, simple_negative.
    """
    import datasets

    if isinstance(train, Mapping):
        train = datasets.Dataset.from_dict(dict(train))
    elif isinstance(train, list):
        train = datasets.Dataset.from_list(train)
    if not isinstance(train, datasets.Dataset):
        raise TrainDataError(
            f"train must be a datasets.Dataset, a dict of columns or a list of records, got "
            f"{type(train).__name__}"
        )
    columns = quadruplet_columns(train.column_names)
    missing = [c for c in columns if c not in train.column_names]
    if missing:
        raise TrainDataError(
            f"training data lacks column(s) {missing}; expected {list(columns)}, got "
            f"{train.column_names}"
        )
    if len(train) == 0:
        raise TrainDataError("training data has no rows")
    return train.select_columns(list(columns))


def quadruplet_columns(names: Any) -> tuple[str, ...]:
    """The loss columns for a table with these column names: one ``hard_negative`` or ``N``
    numbered ones (``hard_negative_1`` …, consecutive from 1)."""
    from quadbert.mining import text_columns

    n = 0
    while f"hard_negative_{n + 1}" in names:
        n += 1
    return text_columns(n) if n > 1 else QUAD_COLUMNS


def train_quadbert(
    model: Any,
    train: Any,
    eval_data: Any = None,
    output_dir: str | Path = "quadbert-model",
    loss_kwargs: dict[str, Any] | None = None,
    args: Any = None,
    *,
    resume_from_checkpoint: str | bool | None = None,
    callbacks: list[Any] | None = None,
):
    """Train ``model`` on quadruplets with ``QuadrupletLoss``; save the final model to ``output_dir``.

    Args:
        model: a ``SentenceTransformer`` or the path/name of one.
        train: quadruplets (see :func:`quadbert.mining.build_quadruplets`).
        eval_data: optional ``RetrievalData`` evaluated with ``InformationRetrievalEvaluator``
            after each epoch (and before training when ``args.eval_on_start``).
        output_dir: where checkpoints (``checkpoint-*``) and the final model go. Ignored when
            ``args`` is given (its own ``output_dir`` is used).
        loss_kwargs: keyword arguments of :class:`~quadbert.losses.QuadrupletLoss`.
        args: ``SentenceTransformerTrainingArguments``; default :func:`default_training_args`.
        resume_from_checkpoint: ``True`` (latest checkpoint in ``output_dir``) or a checkpoint path.
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        The trained ``SentenceTransformer`` (also saved in ``output_dir``).
    """
    from sentence_transformers.base.sampler import BatchSamplers

    from quadbert.encoders import load_encoder
    from quadbert.losses import QuadrupletLoss

    loss_kwargs = dict(loss_kwargs or {})
    if isinstance(model, (str, Path)):
        model = load_encoder(model)
    dataset = as_quadruplet_dataset(train)
    loss = QuadrupletLoss(model, **loss_kwargs)
    if args is None:
        extra: dict[str, Any] = {}
        if loss.in_batch_weight > 0:  # in-batch negatives must not be copies of the positive
            extra["batch_sampler"] = BatchSamplers.NO_DUPLICATES
        if eval_data is not None:
            extra["eval_strategy"] = "epoch"
        args = default_training_args(output_dir, **extra)
    train_with_loss(
        model,
        dataset,
        loss,
        args,
        eval_data=eval_data,
        resume_from_checkpoint=resume_from_checkpoint,
        callbacks=callbacks,
    )
    return model


def train_with_loss(
    model: Any,
    train_dataset: Any,
    loss: Any,
    args: Any,
    *,
    eval_data: Any = None,
    resume_from_checkpoint: str | bool | None = None,
    callbacks: list[Any] | None = None,
):
    """Run ``SentenceTransformerTrainer`` with any loss (used for QuadrupletLoss and the baselines).

    Saves the final model to ``args.output_dir`` and returns the trainer.
    """
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer

    if resume_from_checkpoint is True and not _has_checkpoint(args.output_dir):
        raise FileNotFoundError(
            f"resume requested but {args.output_dir} holds no checkpoint-* folder to resume from"
        )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        evaluator=ir_evaluator(eval_data) if eval_data is not None else None,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if trainer.is_world_process_zero():
        model.save(str(args.output_dir))
    return trainer


def _has_checkpoint(output_dir: str | Path) -> bool:
    path = Path(output_dir)
    return path.is_dir() and any(p.is_dir() for p in path.glob("checkpoint-*"))
