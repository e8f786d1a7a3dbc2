"""Training a transformers classifier with soft labels: :class:`KLSTrainer` (a ``transformers.Trainer``).

Objectives (``KLSTrainingArguments.kls_objective``):

* ``"two_head"`` (default, the reference, §2.0): an auxiliary linear head z₁ of size C is attached to
  the classifier's penultimate features (the input of its classification ``Linear``) and regressed
  onto q with MSE; loss ``(CE₀ + α·MSE) / (1 + α)²``, α = ``kls_alpha`` = 1. The aux head is attached
  for the duration of ``train()`` only (to the model ``model_init`` returns, too) and detached when
  it returns: afterwards ``trainer.model`` is the plain classifier (``model.save_pretrained`` writes
  no aux weights, inference runs no aux head); the detached head stays at ``trainer.aux_head``. It is
  saved into *checkpoints* (``kls_aux_head.safetensors``) so training resumes exactly, and is left
  out of the model weights, so every saved model directory is a plain
  ``AutoModelForSequenceClassification``.
* ``"kl"`` (§2.1 [inferred]): ``CE(p, y) + λ·KL(ỹ ‖ p)``, λ = ``kls_lambda``.
* ``"soft_ce"``: cross-entropy on the soft column (uniform ỹ → classic label smoothing).
* ``"ce"``: plain fine-tuning (honours ``label_smoothing_factor``: the classic LS baseline).

The soft labels are a dataset column (default ``soft_label``), computed once offline by
:class:`kls.KeywordLabelSmoother` / :class:`kls.UniformLabelSmoother`. Runs under
``accelerate launch`` unchanged: the aux head is a submodule used inside the model's forward.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from kls._checks import check_range, validate_soft_labels
from kls.errors import KLSError
from kls.losses import soft_cross_entropy, soft_target_loss, two_head_loss

logger = logging.getLogger(__name__)

AUX_HEAD_NAME = "kls_aux_head"
AUX_HEAD_FILE = "kls_aux_head.safetensors"
OBJECTIVES = ("two_head", "kl", "soft_ce", "ce")


@dataclass
class KLSTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the soft-label objective's settings."""

    kls_objective: str = field(
        default="two_head", metadata={"help": "two_head (reference) | kl | soft_ce | ce"}
    )
    kls_alpha: float = field(default=1.0, metadata={"help": "α of the two-head objective (≥ 0)"})
    kls_lambda: float = field(default=1.0, metadata={"help": "λ of CE + λ·KL (≥ 0)"})
    soft_label_column: str = field(default="soft_label", metadata={"help": "soft-label column"})

    def __post_init__(self):
        super().__post_init__()
        if self.kls_objective not in OBJECTIVES:
            raise KLSError(f"kls_objective must be one of {OBJECTIVES}, got {self.kls_objective!r}")
        check_range("kls_alpha", self.kls_alpha, low=0.0)
        check_range("kls_lambda", self.kls_lambda, low=0.0)


def find_classification_head(model: nn.Module) -> nn.Linear:
    """The ``nn.Linear`` producing a sequence classifier's logits (``classifier``, ``score``, ``out_proj``)."""
    n = getattr(getattr(model, "config", None), "num_labels", None)
    for name in ("classifier", "score"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            return head
        if isinstance(head, nn.Module):
            linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
            if linears and (n is None or linears[-1].out_features == n):
                return linears[-1]
    raise KLSError(
        f"cannot find the classification head of {type(model).__name__}: expected a `classifier` or "
        "`score` attribute ending in nn.Linear (an AutoModelForSequenceClassification)"
    )


def attach_aux_head(model: nn.Module, seed: int = 0, head: nn.Linear | None = None) -> nn.Linear:
    """Add the reference's auxiliary head (a ``Linear(features, C)``) to ``model`` as ``kls_aux_head``.

    A forward hook on the classification head feeds the same penultimate features to the aux head
    and keeps its logits in ``model.kls_aux_head.last_logits``. A new head is initialised from its
    own generator (normal, std = ``initializer_range``), so the global RNG — hence dropout masks — is
    untouched; ``head=`` re-attaches a head detached earlier (same weights).
    """
    existing = getattr(model, AUX_HEAD_NAME, None)
    if isinstance(existing, nn.Linear):
        return existing
    cls_head = find_classification_head(model)
    if head is not None:
        if (head.in_features, head.out_features) != (cls_head.in_features, cls_head.out_features):
            raise KLSError(
                f"aux head is Linear({head.in_features}, {head.out_features}); the classifier needs "
                f"Linear({cls_head.in_features}, {cls_head.out_features})"
            )
        aux = head
    else:
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init must not advance the RNG
            aux = nn.Linear(cls_head.in_features, cls_head.out_features)
        std = float(getattr(model.config, "initializer_range", 0.02))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            aux.weight.copy_(torch.randn(aux.weight.shape, generator=g) * std)
            aux.bias.zero_()
    head = cls_head
    aux.to(device=head.weight.device, dtype=head.weight.dtype)
    model.add_module(AUX_HEAD_NAME, aux)
    aux.last_logits = None

    def hook(_mod, args, kwargs, _out):
        feats = args[0] if args else next(iter(kwargs.values()))
        if feats.dim() != 2:
            raise KLSError(
                f"the classification head of {type(model).__name__} sees {feats.dim()}-D features; the "
                "two-head objective needs pooled [batch, hidden] features (use objective 'kl' instead)"
            )
        aux.last_logits = aux(feats)

    aux._kls_hook = head.register_forward_hook(hook, with_kwargs=True)
    return aux


def detach_aux_head(model: nn.Module) -> nn.Linear | None:
    """Remove the auxiliary head (and its hook): ``model`` becomes the plain classifier again.

    Returns the detached head (``None`` when there was none), which :func:`attach_aux_head` can
    re-attach with ``head=``.
    """
    aux = getattr(model, AUX_HEAD_NAME, None)
    if aux is None:
        return None
    aux._kls_hook.remove()
    aux.last_logits = None
    delattr(model, AUX_HEAD_NAME)
    return aux


class KLSTrainer(Trainer):
    """``transformers.Trainer`` whose loss uses a soft-label column (see the module docstring).

    Use with :class:`KLSTrainingArguments` (plain ``TrainingArguments`` means the reference
    defaults: two heads, α = 1). Everything else — checkpoints, ``resume_from_checkpoint``,
    evaluation, ``accelerate launch`` — is the Trainer's.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.kls_objective not in OBJECTIVES:
            raise KLSError(f"kls_objective must be one of {OBJECTIVES}, got {self.kls_objective!r}")
        self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean
        self._check_soft_column(self.train_dataset, "train_dataset")
        #: the auxiliary head while detached (after ``train()`` returns); ``None`` before training
        self.aux_head: nn.Linear | None = None

    # settings are read from ``self.args`` at use time, so hyperparameter_search can set them
    @property
    def kls_objective(self) -> str:
        return getattr(self.args, "kls_objective", "two_head")

    @property
    def kls_alpha(self) -> float:
        return float(getattr(self.args, "kls_alpha", 1.0))

    @property
    def kls_lambda(self) -> float:
        return float(getattr(self.args, "kls_lambda", 1.0))

    @property
    def soft_label_column(self) -> str:
        return getattr(self.args, "soft_label_column", "soft_label")

    # ------------------------------------------------------- the aux head's lifetime
    def _attach(self, model: nn.Module) -> None:
        if self.kls_objective == "two_head":
            self.aux_head = attach_aux_head(model, seed=self.args.seed, head=self.aux_head)

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """``model_init``'s fresh model, with a fresh aux head (each trial starts from scratch)."""
        model = super().call_model_init(trial)
        if getattr(self, "is_in_train", False):  # not for the model Trainer.__init__ builds
            self.aux_head = None
            self._attach(model)
        return model

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs):
        """``Trainer.train`` with the aux head attached for the run and detached when it returns."""
        if self.model_init is None:
            self._attach(self.model)  # model_init models get theirs in call_model_init
        try:
            return super().train(
                resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs
            )
        finally:
            head = detach_aux_head(self.accelerator.unwrap_model(self.model))
            if head is not None:
                self.aux_head = head

    def _check_soft_column(self, ds: Any, what: str) -> None:
        """Validate the soft-label column once, at the boundary (rows, length C, sum 1, no NaN)."""
        cols = getattr(ds, "column_names", None)
        if not cols or self.soft_label_column not in cols:
            return
        n_labels = getattr(getattr(self.model, "config", None), "num_labels", None)
        validate_soft_labels(
            ds[self.soft_label_column], n_labels, what=f"{what} {self.soft_label_column}"
        )

    # keep the soft-label column through remove_unused_columns
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.soft_label_column not in self._signature_columns:
            self._signature_columns.append(self.soft_label_column)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        soft = inputs.pop(self.soft_label_column, None)
        labels = inputs.pop("labels", None)
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        aux = getattr(self.accelerator.unwrap_model(model), AUX_HEAD_NAME, None)
        aux_logits = aux.last_logits if aux is not None else None
        if aux is not None:
            aux.last_logits = None
        if labels is None:
            raise KLSError("the batch has no `labels`: the dataset needs a `label` column")
        objective = self.kls_objective
        if soft is None and objective != "ce":
            if model.training:
                raise KLSError(
                    f"objective {objective!r} needs a {self.soft_label_column!r} column in the training data"
                )
            objective = "ce"  # evaluation sets need no soft labels
        if soft is not None:
            soft = soft.to(logits.dtype)
            if soft.shape != logits.shape:
                raise KLSError(
                    f"soft labels have shape {tuple(soft.shape)}, logits {tuple(logits.shape)}"
                )
        if objective == "two_head" and aux_logits is None:
            if model.training:
                raise KLSError("two-head objective: the aux head is not attached (call train())")
            objective = "ce"  # evaluate() after train(): the plain classifier's cross-entropy
        if objective == "two_head":
            loss = two_head_loss(logits, aux_logits, labels, soft, alpha=self.kls_alpha)
        elif objective == "kl":
            loss = soft_target_loss(logits, labels, soft, lam=self.kls_lambda)
        elif objective == "soft_ce":
            loss = soft_cross_entropy(logits, soft)
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.args.label_smoothing_factor)
        return (loss, outputs) if return_outputs else loss

    # ---------------------------------------------------------------- saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the plain classifier: the auxiliary head's weights are left out."""
        if state_dict is None:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        state_dict = {k: v for k, v in state_dict.items() if not _is_aux_key(k)}
        super()._save(output_dir, state_dict=state_dict)

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        aux = getattr(self.accelerator.unwrap_model(self.model), AUX_HEAD_NAME, None)
        if aux is None or not self.args.should_save:
            return
        from safetensors.torch import save_file

        ckpt = os.path.join(
            self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in aux.state_dict().items()},
            os.path.join(ckpt, AUX_HEAD_FILE),
        )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        aux = getattr(target, AUX_HEAD_NAME, None)
        path = os.path.join(resume_from_checkpoint, AUX_HEAD_FILE)
        if aux is None:
            return
        if not os.path.isfile(path):
            logger.warning(
                "checkpoint %s has no %s: the aux head starts fresh",
                resume_from_checkpoint,
                AUX_HEAD_FILE,
            )
            return
        from safetensors.torch import load_file

        aux.load_state_dict(load_file(path, device=str(aux.weight.device)))


def _is_aux_key(key: str) -> bool:
    return key.startswith(AUX_HEAD_NAME + ".") or f".{AUX_HEAD_NAME}." in key


__all__ = [
    "KLSTrainer",
    "KLSTrainingArguments",
    "attach_aux_head",
    "detach_aux_head",
    "find_classification_head",
]
