"""papercore.trainer_args: TrainingArguments / TRL configs valid on the machine they are built on."""

from __future__ import annotations

import pytest

from papercore.errors import TrainingSettingsError
from papercore.trainer_args import Machine, detect_machine, training_args, training_args_kwargs

CPU = Machine(None, False)
AMPERE = Machine("cuda", True)
OLD_GPU = Machine("cuda", False)


def _trl_configs():
    trl = pytest.importorskip("trl")
    return [trl.SFTConfig, trl.GRPOConfig, trl.RewardConfig]


def test_this_machine_is_cpu_only():
    # the rest of the file builds real objects on this machine, which has no accelerator
    assert detect_machine() == CPU


def test_trl_configs_default_bf16_raise_on_cpu_but_training_args_builds_them(tmp_path):
    for cls in _trl_configs():
        with pytest.raises(ValueError, match="bf16"):  # the problem this helper solves
            cls(output_dir=str(tmp_path))
        args = training_args(cls, output_dir=str(tmp_path), learning_rate=1e-4)
        assert type(args) is cls
        assert args.bf16 is False and args.use_cpu is True
        assert args.device.type == "cpu"
        assert args.report_to in ("none", [])  # normalised to [] by transformers
        assert args.dataloader_pin_memory is False
        assert args.learning_rate == 1e-4  # caller kwargs pass through


def test_transformers_training_args_is_the_default(tmp_path):
    from transformers import TrainingArguments

    args = training_args(output_dir=str(tmp_path), per_device_train_batch_size=3)
    assert type(args) is TrainingArguments
    assert args.per_device_train_batch_size == 3
    assert args.bf16 is False and args.use_cpu is True and args.dataloader_pin_memory is False


def test_caller_kwargs_win(tmp_path):
    trl = pytest.importorskip("trl")
    args = training_args(
        trl.GRPOConfig,
        output_dir=str(tmp_path),
        dataloader_pin_memory=True,
        report_to=[],
        num_generations=4,
        bf16=False,
    )
    assert args.num_generations == 4 and args.bf16 is False
    # (transformers itself turns pinning off on CPU after construction; what we pass is the caller's)
    kw = training_args_kwargs(
        trl.GRPOConfig, machine=CPU, dataloader_pin_memory=True, report_to="wandb"
    )
    assert kw["dataloader_pin_memory"] is True and kw["report_to"] == "wandb"


def test_explicit_bf16_on_cpu_is_a_clear_error(tmp_path):
    trl = pytest.importorskip("trl")
    with pytest.raises(TrainingSettingsError, match=r"bf16=True.*CPU-only machine.*Ampere"):
        training_args(trl.SFTConfig, output_dir=str(tmp_path), bf16=True)
    with pytest.raises(TrainingSettingsError, match=r"bf16_full_eval=True"):
        training_args(output_dir=str(tmp_path), bf16_full_eval=True)


def test_resolution_on_other_machines():
    trl = pytest.importorskip("trl")
    from transformers import TrainingArguments

    # a bf16 GPU: TRL's default (bf16 on) is kept, transformers' default (off) too
    kw = training_args_kwargs(trl.SFTConfig, machine=AMPERE)
    assert kw == {"use_cpu": False, "bf16": True, "report_to": "none"}
    assert training_args_kwargs(TrainingArguments, machine=AMPERE)["bf16"] is False
    assert training_args_kwargs(trl.SFTConfig, machine=AMPERE, fp16=True)["bf16"] is False
    assert training_args_kwargs(trl.SFTConfig, machine=AMPERE, bf16=True)["bf16"] is True
    # asking for the CPU on a GPU machine turns bf16 off, and asking for both is an error
    kw = training_args_kwargs(trl.SFTConfig, machine=AMPERE, use_cpu=True)
    assert kw["bf16"] is False and kw["dataloader_pin_memory"] is False
    with pytest.raises(TrainingSettingsError, match="use_cpu=True"):
        training_args_kwargs(trl.SFTConfig, machine=AMPERE, use_cpu=True, bf16=True)
    # a GPU without bf16 (pre-Ampere): no bf16 by default, an error if asked
    assert training_args_kwargs(trl.GRPOConfig, machine=OLD_GPU)["bf16"] is False
    with pytest.raises(TrainingSettingsError, match="cuda without bf16 support"):
        training_args_kwargs(trl.GRPOConfig, machine=OLD_GPU, bf16=True)
    # bf16=None is TRL's "unset": resolved like an absent bf16
    assert training_args_kwargs(trl.SFTConfig, machine=CPU, bf16=None)["bf16"] is False
    assert training_args_kwargs(trl.SFTConfig, machine=AMPERE, bf16=None)["bf16"] is True
    # CPU only
    kw = training_args_kwargs(trl.RewardConfig, machine=CPU)
    assert kw == {
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "dataloader_pin_memory": False,
    }


def test_bad_class_and_unknown_fields_are_named():
    trl = pytest.importorskip("trl")
    with pytest.raises(TrainingSettingsError, match=r"TrainingArguments or a subclass.*got dict"):
        training_args(dict)
    with pytest.raises(TypeError, match=r"got 'SFTConfig'"):  # an instance, not a class
        training_args("SFTConfig")
    with pytest.raises(
        TrainingSettingsError, match=r"SFTConfig has no field\(s\) \['num_epochs'\]"
    ):
        training_args(trl.SFTConfig, num_epochs=3)
