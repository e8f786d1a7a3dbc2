"""GRPO training of the guard with TRL (spec §2.3) and the SFT baseline.

Real-scale settings (released script): lr 1e-6, 16 rollouts per prompt, KL-loss coefficient 0.001,
max completion 1024, 10 epochs; weights "uniform" (0.33/0.33/0.34). The model is passed as a *directory*:
with ``beta > 0`` TRL rebuilds the reference model from ``config._name_or_path``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ts_guard.errors import ConfigError, DatasetError
from ts_guard.rewards import make_reward_funcs

logger = logging.getLogger(__name__)

__all__ = ["REAL_SCALE", "grpo_config", "train_grpo", "train_sft", "sft_target"]

#: the released run's GRPO settings, in TRL's names
REAL_SCALE: dict[str, Any] = dict(
    learning_rate=1e-6,
    num_generations=16,
    beta=0.001,
    max_completion_length=1024,
    num_train_epochs=10,
    temperature=1.0,
)


def grpo_config(
    output_dir: str | Path,
    *,
    weights: str | Sequence[float] = "uniform",
    real_scale: bool = True,
    **overrides: Any,
):
    """A machine-valid ``trl.GRPOConfig`` (via ``papercore.trainer_args.training_args``) with the
    released settings (``real_scale=True``) and ``reward_weights`` from ``weights``; ``overrides`` win."""
    from trl import GRPOConfig

    from papercore.trainer_args import training_args

    _, reward_weights = make_reward_funcs(weights)
    kw: dict[str, Any] = dict(REAL_SCALE) if real_scale else dict(beta=0.001)
    kw.update(
        output_dir=str(output_dir), reward_weights=reward_weights, report_to=[], save_strategy="no"
    )
    kw.update(overrides)
    return training_args(GRPOConfig, **kw)


def _check_dataset(ds: Any) -> None:
    need = {"prompt", "gt_mur", "gt_pi", "gt_rating"}
    missing = need - set(ds.column_names)
    if missing:
        raise DatasetError(
            f"training data needs columns {sorted(need)}; missing {sorted(missing)} (use steps_to_dataset)"
        )
    if len(ds) == 0:
        raise DatasetError("training data is empty")


def train_grpo(
    model_dir: str | Path,
    train_dataset: Any,
    *,
    output_dir: str | Path,
    weights: str | Sequence[float] = "uniform",
    official: bool = True,
    config: Any = None,
    rollout_func: Callable[..., dict[str, Any]] | None = None,
    tokenizer: Any = None,
    **config_overrides: Any,
):
    """Train the guard with ``trl.GRPOTrainer`` and the three head rewards; returns the trainer (trained).

    ``config``: a ready ``GRPOConfig`` (its ``reward_weights`` are replaced by ``weights``'); otherwise
    :func:`grpo_config` with ``config_overrides``. ``rollout_func`` is passed to TRL (scripted or external
    rollouts). The final model is saved to ``output_dir``.
    """
    from trl import GRPOTrainer

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(
            f"model must be a saved model directory (TRL rebuilds the reference model from it), got {str(model_dir)!r}"
        )
    _check_dataset(train_dataset)
    funcs, reward_weights = make_reward_funcs(weights, official=official)
    if config is None:
        config = grpo_config(output_dir, weights=weights, **config_overrides)
    else:
        config.reward_weights = reward_weights
    if tokenizer is None:
        from papercore.models import load_tokenizer

        tokenizer = load_tokenizer(str(model_dir))
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=funcs,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        rollout_func=rollout_func,
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    return trainer


def sft_target(gt_mur: bool, gt_pi: bool, gt_rating: float, rationale: str = "") -> str:
    """The guard answer an SFT baseline is trained to produce (released tag format, backslash closing)."""
    think = f"<Think> {rationale} <\\Think>\n" if rationale else ""
    return (
        f"{think}<Malicious_User_Request> {'yes' if gt_mur else 'no'} <\\Malicious_User_Request>\n"
        f"<Being_Attacked> {'yes' if gt_pi else 'no'} <\\Being_Attacked>\n"
        f"<Harmfulness_Rating> {gt_rating:.1f} <\\Harmfulness_Rating>"
    )


def train_sft(
    model_dir: str | Path,
    train_dataset: Any,
    *,
    output_dir: str | Path,
    tokenizer: Any = None,
    **config_overrides: Any,
):
    """SFT baseline with ``trl.SFTTrainer`` on prompt → :func:`sft_target` completions; returns the trainer."""
    from trl import SFTConfig, SFTTrainer

    from papercore.trainer_args import training_args

    _check_dataset(train_dataset)
    ds = train_dataset.map(
        lambda r: {
            "completion": (
                [
                    {
                        "role": "assistant",
                        "content": sft_target(r["gt_mur"], r["gt_pi"], r["gt_rating"]),
                    }
                ]
                if isinstance(r["prompt"], list)
                else sft_target(r["gt_mur"], r["gt_pi"], r["gt_rating"])
            )
        }
    ).select_columns(["prompt", "completion"])
    kw: dict[str, Any] = dict(
        output_dir=str(output_dir), report_to=[], save_strategy="no", learning_rate=1e-5
    )
    kw.update(config_overrides)
    if tokenizer is None:
        from papercore.models import load_tokenizer

        tokenizer = load_tokenizer(str(model_dir))
    trainer = SFTTrainer(
        model=str(model_dir),
        args=training_args(SFTConfig, **kw),
        train_dataset=ds,
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    return trainer
