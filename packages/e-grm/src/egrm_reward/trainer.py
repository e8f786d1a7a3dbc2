"""Training the path scorer: grouped batches through a ``transformers.Trainer`` subclass.

TRL's ``RewardTrainer`` keeps only ``chosen`` / ``rejected`` halves, so it cannot see groups of N
paths with graded targets; :class:`ScorerTrainer` subclasses ``transformers.Trainer`` instead and
computes :class:`~egrm_reward.losses.HybridRankRegLoss` on batches built by
:class:`GroupCollator`, which never splits a group (``per_device_train_batch_size`` counts *groups*).
It therefore runs under ``accelerate launch`` unchanged. :func:`train_bradley_terry` keeps
``RewardTrainer`` for the scalar Bradley–Terry baseline (extra ``egrm-reward[trl]``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Trainer

from egrm_reward.errors import GroupSizeError, ShapeMismatchError, TargetError
from egrm_reward.losses import HybridRankRegLoss
from egrm_reward.scorer import PathScorer

logger = logging.getLogger(__name__)


@dataclass
class PathGroup:
    """The N scored paths of one prompt: texts (or precomputed features) and targets q ∈ [0, 1]."""

    prompt: str
    paths: list[str] | None
    targets: list[float]
    features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.targets)
        if n < 2:
            raise GroupSizeError(
                f"a path group needs >= 2 paths, got {n} (prompt {self.prompt[:60]!r})"
            )
        if any(not isinstance(t, (int, float)) or math.isnan(t) for t in self.targets):
            raise TargetError(
                f"targets must be finite numbers, got {self.targets} (prompt {self.prompt[:60]!r})"
            )
        if self.paths is None and self.features is None:
            raise ShapeMismatchError("a path group needs paths (texts) or features")
        if self.paths is not None and len(self.paths) != n:
            raise ShapeMismatchError(f"{len(self.paths)} paths but {n} targets")
        if self.features is not None and self.features.shape[0] != n:
            raise ShapeMismatchError(f"{self.features.shape[0]} feature rows but {n} targets")


class PathGroupDataset(torch.utils.data.Dataset):
    """A list of :class:`PathGroup` (or dicts with ``prompt``, ``paths``, ``targets``) as a dataset of groups."""

    def __init__(self, groups: Sequence[PathGroup | dict[str, Any]]):
        self.groups = [g if isinstance(g, PathGroup) else PathGroup(**g) for g in groups]
        if not self.groups:
            raise GroupSizeError("the scorer's training set is empty (expected >= 1 group)")

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> PathGroup:
        return self.groups[i]


class GroupCollator:
    """Flattens a list of groups into one batch, keeping ``group_ids`` (the group's index in the batch)."""

    def __init__(self, scorer: PathScorer | None = None):
        self.scorer = scorer

    def __call__(self, groups: list[PathGroup]) -> dict[str, torch.Tensor]:
        gids = torch.tensor([g for g, grp in enumerate(groups) for _ in grp.targets])
        targets = torch.tensor([t for grp in groups for t in grp.targets], dtype=torch.float32)
        if all(grp.features is not None for grp in groups):
            feats = torch.cat([grp.features for grp in groups]).float()  # type: ignore[misc]
            return {"features": feats, "targets": targets, "group_ids": gids}
        if self.scorer is None:
            raise ShapeMismatchError("text path groups need GroupCollator(scorer) to tokenize them")
        prompts = [grp.prompt for grp in groups for _ in grp.targets]
        paths = [p for grp in groups for p in (grp.paths or [])]
        enc = self.scorer.encode(prompts, paths)
        return {**enc, "targets": targets, "group_ids": gids}


class ScorerTrainer(Trainer):
    """``transformers.Trainer`` computing :class:`HybridRankRegLoss` on grouped batches.

    Args:
        model: the :class:`PathScorer` to train.
        loss: the loss (default ``HybridRankRegLoss()``: λ = 0.5, m = 0, δ = 0).
        args: a ``TrainingArguments`` (build it with :func:`make_training_args`); columns are never
            removed, since groups carry their own fields.
        train_dataset: a :class:`PathGroupDataset`.
    """

    def __init__(
        self, model: PathScorer, *args: Any, loss: HybridRankRegLoss | None = None, **kwargs: Any
    ):
        kwargs.setdefault("data_collator", GroupCollator(model))
        super().__init__(model, *args, **kwargs)
        self.args.remove_unused_columns = False
        self.loss_fn = loss or HybridRankRegLoss()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        targets = inputs.pop("targets")
        group_ids = inputs.pop("group_ids")
        scores = model(**inputs)
        loss = self.loss_fn(scores, targets, group_ids)
        return (loss, {"scores": scores}) if return_outputs else loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the scorer with :meth:`PathScorer.save_pretrained` (loadable by ``from_pretrained``)."""
        out = output_dir or self.args.output_dir
        if self.args.should_save:
            self.model.save_pretrained(out)


def make_training_args(config_cls: Any = None, **kwargs: Any) -> Any:
    """A ``TrainingArguments`` (or a TRL config class) valid on this machine.

    Built with ``papercore.trainer_args.training_args`` (bf16 off without a bf16-capable
    accelerator, so TRL configs construct on CPU); defaults ``report_to="none"``,
    ``save_strategy="no"`` and ``remove_unused_columns=False`` (groups carry their own fields).
    """
    from papercore.trainer_args import training_args

    if config_cls is None:
        from transformers import TrainingArguments

        config_cls = TrainingArguments
    kwargs.setdefault("report_to", "none")
    kwargs.setdefault("save_strategy", "no")
    kwargs.setdefault("remove_unused_columns", False)
    return training_args(config_cls, **kwargs)


def train_scorer(
    scorer: PathScorer,
    groups: Sequence[PathGroup | dict[str, Any]],
    *,
    output_dir: str,
    loss: HybridRankRegLoss | None = None,
    epochs: float = 1.0,
    lr: float = 1e-4,
    groups_per_batch: int = 8,
    seed: int = 0,
    **training_kwargs: Any,
) -> ScorerTrainer:
    """Train ``scorer`` on path groups with :class:`ScorerTrainer`; returns the trainer (after ``train()``)."""
    args = make_training_args(
        output_dir=output_dir,
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=groups_per_batch,
        seed=seed,
        data_seed=seed,
        logging_steps=10,
        disable_tqdm=True,
        **training_kwargs,
    )
    trainer = ScorerTrainer(scorer, args=args, train_dataset=PathGroupDataset(groups), loss=loss)
    trainer.train()
    return trainer


def train_bradley_terry(
    model_dir: str,
    pairs: Sequence[dict[str, str]],
    *,
    output_dir: str,
    max_steps: int = 10,
    lr: float = 1e-4,
    batch_size: int = 4,
    seed: int = 0,
    **config_kwargs: Any,
) -> Any:
    """The scalar Bradley–Terry baseline with TRL's ``RewardTrainer`` (extra ``egrm-reward[trl]``).

    ``pairs``: dicts with ``chosen`` and ``rejected`` texts (implicit prompt). Returns the trained trainer.
    Its loss is ``−log σ(r_c − r_j)``; TRL drops pairs longer than ``max_length``.
    """
    try:
        from trl import RewardConfig, RewardTrainer
    except ImportError as e:
        raise ImportError(
            "the Bradley-Terry baseline needs TRL: pip install 'egrm-reward[trl]'"
        ) from e
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    from papercore.models import load_tokenizer

    if not pairs:
        raise GroupSizeError(
            "the Bradley-Terry baseline needs at least one (chosen, rejected) pair"
        )
    for i, p in enumerate(pairs):
        if "chosen" not in p or "rejected" not in p:
            raise ShapeMismatchError(
                f"pair {i} needs 'chosen' and 'rejected', got keys {sorted(p)}"
            )
    tok = load_tokenizer(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=1, dtype=torch.float32
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = (
            tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        )
    args = make_training_args(
        RewardConfig,
        output_dir=output_dir,
        max_steps=max_steps,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        seed=seed,
        logging_steps=1,
        disable_tqdm=True,
        **config_kwargs,
    )
    ds = Dataset.from_list([{"chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs])
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    return trainer
