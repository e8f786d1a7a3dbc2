"""Issue 21 §5: the GPU / multi-GPU path, checked on CPU.

* A model given by id is loaded by the trainer itself (per rank), with ``GRPOConfig.model_init_kwargs``
  (dtype, attn_implementation); nothing is materialised before ``GRPOTrainer`` exists.
* Text-protocol rollouts generate inside TRL's ``unwrap_model_for_generation`` (ZeRO-3: parameters
  gathered once per rollout) with a configurable HF generation batch size; setups where ranks would
  hang (FSDP, ZeRO-3 without gathering, vLLM TP > 1, vLLM server) are refused at construction.
"""

from __future__ import annotations

import contextlib
import os
from types import SimpleNamespace

import pytest
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from agentic_sql.errors import DistributedSetupError
from agentic_sql.train import (
    TrainConfig,
    build_trainer,
    check_text_protocol_setup,
    model_init_kwargs,
)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models gain nothing from a second thread."""


@pytest.fixture(scope="module")
def root(tmp_path_factory, make_shop_db):
    return make_shop_db(tmp_path_factory.mktemp("dbs"))


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory, tiny_tokenizer):
    """A saved tiny Qwen2 (sdpa, float32) with its tokenizer: a model given by path."""
    from papercore.testing.builders import save_model_dir, tiny_causal_lm

    model = tiny_causal_lm("qwen2", tokenizer=tiny_tokenizer)
    return save_model_dir(model, tiny_tokenizer, tmp_path_factory.mktemp("tiny-qwen2"))


def rows():
    return [
        {
            "prompt": [{"role": "user", "content": f"List customers in {c}."}],
            "db_id": "shop",
            "gold_sql": f"SELECT name FROM customers WHERE city = '{c}'",
        }
        for c in ("paris", "rome")
    ]


def cfg(tmp_path, model, **grpo):
    return TrainConfig(
        model=str(model),
        output_dir=str(tmp_path / "run"),
        protocol="text",
        max_turns=2,
        isolation="thread",
        max_new_tokens_per_turn=4,
        hf_generation_batch_size=3,
        grpo={
            "max_steps": 1,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "max_completion_length": 16,
            "use_cpu": True,
            "bf16": False,
            "save_strategy": "no",
            "disable_tqdm": True,
            **grpo,
        },
    )


@pytest.fixture
def no_early_load(monkeypatch):
    """Fail if anything loads the policy before the trainer (papercore.models.load_model), and record
    the trainer's own loads (TRL's create_model_from_path)."""
    import trl.trainer.grpo_trainer as grpo_mod

    import papercore.models

    def refuse(*a, **k):
        raise AssertionError("the policy was materialised before GRPOTrainer existed")

    monkeypatch.setattr(papercore.models, "load_model", refuse)
    calls = []
    real = grpo_mod.create_model_from_path

    def spy(model_id, *a, **kwargs):
        calls.append((model_id, dict(kwargs)))
        return real(model_id, *a, **kwargs)

    monkeypatch.setattr(grpo_mod, "create_model_from_path", spy)
    return calls


@pytest.mark.parametrize(
    ("grpo", "attn", "dtype"),
    [
        ({"model_init_kwargs": {"attn_implementation": "eager", "dtype": "bfloat16"}}, "eager", torch.bfloat16),
        ({"model_init_kwargs": {"attn_implementation": "sdpa"}, "model_dtype": "float16"}, "sdpa", torch.float16),
    ],
)  # fmt: skip
def test_model_id_is_loaded_by_the_trainer_with_model_init_kwargs(
    tmp_path, root, qwen_dir, no_early_load, grpo, attn, dtype
):
    from datasets import Dataset

    trainer = build_trainer(
        cfg(tmp_path, qwen_dir, **grpo), train_dataset=Dataset.from_list(rows()), db_root=root
    )
    try:
        assert [c[0] for c in no_early_load] == [str(qwen_dir)]  # loaded once, by the trainer
        kwargs = no_early_load[0][1]
        assert kwargs["attn_implementation"] == attn
        model = trainer.accelerator.unwrap_model(trainer.model)
        assert model.config._attn_implementation == attn
        assert model.dtype == dtype
        assert trainer.args.model_init_kwargs["attn_implementation"] == attn
    finally:
        trainer._agentic_sql_env_factory.close()


def test_model_init_kwargs_with_a_loaded_model_is_refused(tmp_path, root, qwen_dir, tiny_tokenizer):
    from datasets import Dataset

    from papercore.models import load_model

    model = load_model(str(qwen_dir), dtype="float32")
    c = cfg(tmp_path, qwen_dir, model_init_kwargs={"attn_implementation": "eager"})
    with pytest.raises(DistributedSetupError, match="only apply when the model is given by id"):
        build_trainer(
            c, model=model, tokenizer=tiny_tokenizer, train_dataset=Dataset.from_list(rows()),
            db_root=root,
        )  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_model_init_kwargs_merging_and_validation(tmp_path, monkeypatch):
    c = cfg(
        tmp_path,
        "org/m",
        model_init_kwargs={"attn_implementation": "eager"},
        model_dtype="bfloat16",
    )
    assert model_init_kwargs(c) == {"attn_implementation": "eager", "dtype": "bfloat16"}
    alias = cfg(tmp_path, "org/m", model_dtype="bf16")  # papercore's short names work too
    assert model_init_kwargs(alias) == {"dtype": "bfloat16"}
    bad = cfg(tmp_path, "org/m", model_init_kwargs={"dtype": "float32"}, model_dtype="bfloat16")
    with pytest.raises(DistributedSetupError, match="disagree"):
        model_init_kwargs(bad)
    with pytest.raises(ValueError, match="model_init_kwargs must be a mapping"):
        cfg(tmp_path, "org/m", model_init_kwargs="eager")
    with pytest.raises(ValueError, match="hf_generation_batch_size must be >= 1"):
        TrainConfig(model="org/m", hf_generation_batch_size=0)

    import accelerate

    class EightRanks:  # what PartialState reports under `accelerate launch --num_processes 8`
        num_processes = 8

    monkeypatch.setattr(accelerate, "PartialState", EightRanks)
    assert model_init_kwargs(c)["device_map"] is None  # never device_map="auto" on every rank
    mapped = cfg(tmp_path, "org/m", model_init_kwargs={"device_map": {"": 0}})
    assert model_init_kwargs(mapped)["device_map"] == {"": 0}  # the user's choice is kept


def test_text_rollout_generates_inside_unwrap_model_for_generation(
    tmp_path, root, qwen_dir, tiny_tokenizer, monkeypatch
):
    """The rollout enters TRL's unwrap helper once per call (one gather for all turns) with the
    trainer's ds3_gather_for_generation, and generates in batches of hf_generation_batch_size."""
    import trl.models
    from datasets import Dataset

    import papercore.generation
    from papercore.models import load_model

    entered = []

    @contextlib.contextmanager
    def spy_unwrap(model, accelerator, gather_deepspeed3_params=True, **kw):
        entered.append(gather_deepspeed3_params)
        yield accelerator.unwrap_model(model)

    monkeypatch.setattr(trl.models, "unwrap_model_for_generation", spy_unwrap)
    sizes = []
    real_make = papercore.generation.make_backend

    def spy_make(kind, **kw):
        sizes.append((kind, kw.get("batch_size")))
        return real_make(kind, **kw)

    monkeypatch.setattr(papercore.generation, "make_backend", spy_make)
    model = load_model(str(qwen_dir), dtype="float32")
    c = cfg(tmp_path, qwen_dir, ds3_gather_for_generation=False)
    trainer = build_trainer(
        c, model=model, tokenizer=tiny_tokenizer, train_dataset=Dataset.from_list(rows()),
        db_root=root,
    )  # fmt: skip
    try:
        prompts = [r["prompt"] for r in rows() for _ in range(2)]
        out = trainer.rollout_func(prompts, trainer)
    finally:
        trainer._agentic_sql_env_factory.close()
    assert entered == [False]  # once per rollout call, with the config's gather flag
    assert sizes == [("transformers", 3)]
    assert len(out["completion_ids"]) == 4 and len(out["n_turns"]) == 4
    assert trainer.rollout_func._backend.current is None  # nothing kept outside the call


def fake_trainer(**args):
    base = {
        "ds3_gather_for_generation": True,
        "vllm_mode": "colocate",
        "vllm_tensor_parallel_size": 1,
    }
    return SimpleNamespace(
        args=SimpleNamespace(**{**base, **args}),
        is_fsdp_enabled=False,
        _dist=SimpleNamespace(is_zero3=False),
        use_vllm=False,
    )


def test_text_protocol_refuses_setups_where_ranks_would_hang():
    check_text_protocol_setup(fake_trainer())  # DDP / single process
    zero3 = fake_trainer()
    zero3._dist.is_zero3 = True
    check_text_protocol_setup(zero3)  # gathered: each rank holds the whole model while generating
    zero3.args.ds3_gather_for_generation = False
    with pytest.raises(DistributedSetupError, match="ds3_gather_for_generation: true"):
        check_text_protocol_setup(zero3)
    fsdp = fake_trainer()
    fsdp.is_fsdp_enabled = True
    with pytest.raises(DistributedSetupError, match="FSDP"):
        check_text_protocol_setup(fsdp)
    tp = fake_trainer(vllm_tensor_parallel_size=2)
    tp.use_vllm = True
    with pytest.raises(DistributedSetupError, match="vllm_tensor_parallel_size: 1"):
        check_text_protocol_setup(tp)
    server = fake_trainer(vllm_mode="server")
    server.use_vllm = True
    with pytest.raises(DistributedSetupError, match="colocate mode only"):
        check_text_protocol_setup(server)
