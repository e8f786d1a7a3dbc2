"""Side-branch training (spec §2.1): ``L_SB = −mean log P_φ(a | p, r)`` — TRL ``SFTTrainer`` on a
prompt/completion dataset (``completion_only_loss``: only the aux tokens carry labels), with a peft LoRA
adapter named after the dimension (or full fine-tuning with ``lora=None``)."""

from __future__ import annotations

import logging
from typing import Any

from srm_reward.branch import SideBranchModel
from srm_reward.dims import Dimension, get_dimension
from srm_reward.errors import EmptyAuxDatasetError, PreferenceDataError

logger = logging.getLogger(__name__)

__all__ = ["SideBranchTrainer", "default_lora_config"]


def default_lora_config(r: int = 8, alpha: int = 16, target_modules: Any = "all-linear") -> Any:
    """The LoRA config of a branch adapter ([INFERRED]: r=8, alpha=16, all linear layers, no dropout)."""
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )


class SideBranchTrainer:
    """SFT one branch on ``(prompt, completion)`` rows (from :func:`~srm_reward.data.build_aux_dataset`).

    Args:
        dimension: the branch's dimension (name → adapter name).
        model: the base causal LM (a peft ``PeftModel`` gets a new adapter; a plain model is wrapped).
        tokenizer: its tokenizer.
        train_dataset: a ``datasets.Dataset`` (or list of dicts) with ``prompt`` and ``completion``.
        lora: a peft ``LoraConfig`` (default :func:`default_lora_config`), or ``None`` for full fine-tuning.
        output_dir: the trainer's output directory.
        **config_kwargs: ``SFTConfig`` fields (``max_steps``, ``learning_rate``, …); built machine-valid.
    """

    def __init__(
        self,
        dimension: Dimension | str,
        model: Any,
        tokenizer: Any,
        train_dataset: Any,
        *,
        lora: Any = "default",
        output_dir: str = "srm-branch",
        seed: int = 0,
        **config_kwargs: Any,
    ) -> None:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        from papercore.trainer_args import training_args

        self.dimension = get_dimension(dimension)
        ds = (
            train_dataset
            if isinstance(train_dataset, Dataset)
            else Dataset.from_list(list(train_dataset))
        )
        if len(ds) == 0:
            raise EmptyAuxDatasetError(f"no training rows for branch {self.dimension.name!r}")
        missing = {"prompt", "completion"} - set(ds.column_names)
        if missing:
            raise PreferenceDataError(
                f"branch SFT data needs columns prompt and completion; missing {sorted(missing)}"
            )
        ds = ds.select_columns(["prompt", "completion"])
        self.tokenizer = tokenizer
        if lora is not None:
            import peft

            cfg = default_lora_config() if lora == "default" else lora
            name = self.dimension.name
            if isinstance(model, peft.PeftModel):
                model.add_adapter(name, cfg)
                model.set_adapter(name)
            else:
                model = peft.get_peft_model(model, cfg, adapter_name=name)
        self.adapter = None if lora is None else self.dimension.name
        config_kwargs.setdefault("logging_steps", 10)
        config_kwargs.setdefault("save_strategy", "no")
        config_kwargs.setdefault("disable_tqdm", True)
        args = training_args(
            SFTConfig, output_dir=output_dir, completion_only_loss=True, seed=seed, **config_kwargs
        )
        self.trainer = SFTTrainer(
            model=model, args=args, train_dataset=ds, processing_class=tokenizer
        )

    @property
    def model(self) -> Any:
        return self.trainer.model

    def train(self, **branch_kwargs: Any) -> SideBranchModel:
        """Run SFT and return the trained branch (in eval mode; LoRA: on a backend serving the adapter)."""
        self.trainer.train()
        model = self.trainer.model.eval()
        if self.adapter is None:
            return SideBranchModel(
                self.dimension, model=model, tokenizer=self.tokenizer, **branch_kwargs
            )
        from papercore.generation import make_backend

        backend = make_backend("transformers", model=model, tokenizer=self.tokenizer)
        return SideBranchModel.lora(self.dimension, backend, self.adapter, **branch_kwargs)
