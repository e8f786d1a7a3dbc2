from __future__ import annotations

import shutil

import datasets
import pytest
import torch
from transformers import Trainer, TrainerCallback

from epi import (
    EPI_STATE_NAME,
    EPICallback,
    EPIConfig,
    EPITrainer,
    EPIWarning,
    MissingTaskIdError,
    StaticIsolation,
)
from papercore.trainer_args import training_args

SEQ = 12


def _dataset(vocab: int, n: int, seed: int = 0, n_tasks: int = 0) -> datasets.Dataset:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, SEQ), generator=g)
    rows = {"input_ids": ids.tolist(), "labels": ids.tolist(), "attention_mask": [[1] * SEQ] * n}
    if n_tasks:
        rows["task_id"] = [i % n_tasks for i in range(n)]
    return datasets.Dataset.from_dict(rows)


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        weight_decay=0.1,
        max_grad_norm=1.0,
        max_steps=8,
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
    )
    base.update(kw)
    return training_args(**base)


class Recorder(TrainerCallback):
    def __init__(self, epi: EPICallback) -> None:
        self.epi = epi
        self.params: list[dict[str, torch.Tensor]] = []
        self.masks: list[dict[str, torch.Tensor]] = []

    def _snap(self, model) -> None:
        names = self.epi.isolation.params
        self.params.append({n: p.detach().clone() for n, p in names.items()})

    def on_train_begin(self, args, state, control, model=None, **kw):
        self._snap(model)

    def on_step_end(self, args, state, control, model=None, **kw):
        self._snap(model)
        self.masks.append({n: m.clone() for n, m in self.epi.masks.items()})


@pytest.mark.parametrize("isolation_cls", ["evolving", "static"])
def test_unmodified_trainer_freezes_with_grad_accumulation(
    make_tiny_causal_lm, tmp_path, isolation_cls
):
    model = make_tiny_causal_lm("llama")
    model.train()
    cfg = EPIConfig(isolation_ratio=0.2, update_interval=2, exclude=None)
    kw = {"isolation_cls": StaticIsolation} if isolation_cls == "static" else {}
    epi = EPICallback(cfg, **kw)
    rec = Recorder(epi)
    trainer = Trainer(
        model=model,
        args=_args(tmp_path),
        train_dataset=_dataset(model.config.vocab_size, 64),
        callbacks=[epi, rec],
    )
    trainer.train()
    assert epi.isolation.step == 8
    steps = [int(h["step"]) for h in epi.isolation.history]
    assert steps == ([2, 4, 6, 8] if isolation_cls == "evolving" else [2])
    logged = [r for r in trainer.state.log_history if "epi/jaccard" in r]
    assert [r["step"] for r in logged] == steps
    assert {"epi/protected", "epi/released", "epi/density"} <= set(logged[0])
    # the mask in force at step t (built in its pre-step hook) did not move during step t
    for t in range(2, 9):
        before, after, mask = rec.params[t - 1], rec.params[t], rec.masks[t - 1]
        assert sum(int(m.sum()) for m in mask.values()) > 0
        for n, m in mask.items():
            assert torch.equal(after[n][m], before[n][m]), (t, n)
            assert (after[n][~m] != before[n][~m]).float().mean() > 0.9, (t, n)
    # masks exposed as {name: bool tensor}
    assert set(epi.masks) == set(n for n, p in model.named_parameters() if p.requires_grad)


def test_importance_read_before_clipping(make_tiny_causal_lm, tmp_path):
    """With max_grad_norm=1e-8 the clipped gradient's L1 is < sqrt(n)·1e-8; the EMA (β=0, |g|) must hold the
    unclipped magnitude."""
    model = make_tiny_causal_lm("llama")
    cfg = EPIConfig(isolation_ratio=0.1, update_interval=100, ema_beta=0.0, importance="grad_abs")
    epi = EPICallback(cfg)
    with pytest.warns(EPIWarning, match="never updates"):
        Trainer(
            model=model,
            args=_args(tmp_path, max_steps=1, max_grad_norm=1e-8),
            train_dataset=_dataset(model.config.vocab_size, 16),
            callbacks=[epi],
        ).train()
    total = sum(float(t.sum()) for t in epi.isolation.tracker.raw().values())
    n = epi.isolation.tracker.numel
    assert total > 1e3 * (n**0.5) * 1e-8, total


def test_resume_restores_masks_and_ema_exactly(make_tiny_causal_lm, tmp_path):
    cfg = dict(isolation_ratio=0.1, update_interval=2, exclude=None)
    vocab = make_tiny_causal_lm("llama").config.vocab_size
    data = _dataset(vocab, 64)

    def run(out, resume=None, max_steps=8):
        model = make_tiny_causal_lm("llama")
        epi = EPICallback(EPIConfig(**cfg))
        args = _args(out, max_steps=max_steps, save_strategy="steps", save_steps=4)
        Trainer(model=model, args=args, train_dataset=data, callbacks=[epi]).train(
            resume_from_checkpoint=resume
        )
        return epi

    full = run(tmp_path / "a")
    assert (tmp_path / "a" / "checkpoint-4" / EPI_STATE_NAME).exists()
    shutil.copytree(tmp_path / "a" / "checkpoint-4", tmp_path / "b" / "checkpoint-4")
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.isolation.step == 8
    for n in full.masks:
        assert torch.equal(full.masks[n], resumed.masks[n]), n
        assert torch.equal(full.isolation.tracker.raw()[n], resumed.isolation.tracker.raw()[n]), n
    assert [h["step"] for h in resumed.isolation.history] == [2, 4, 6, 8]

    # a checkpoint without EPI state: warning, masks re-warm-up
    shutil.copytree(tmp_path / "a" / "checkpoint-4", tmp_path / "c" / "checkpoint-4")
    (tmp_path / "c" / "checkpoint-4" / EPI_STATE_NAME).unlink()
    with pytest.warns(EPIWarning, match="without EPI state"):
        run(tmp_path / "c", resume=True)


def test_epi_trainer_per_task_windows(make_tiny_causal_lm, tmp_path):
    model = make_tiny_causal_lm("llama")
    cfg = EPIConfig(
        isolation_ratio=0.1,
        update_interval=2,
        track="per_task",
        mode="freeze_other_tasks",
        exclude=None,
    )
    data = _dataset(model.config.vocab_size, 64, n_tasks=2)
    seen: list[int] = []

    class Spy(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            seen.append(trainer.epi_isolation.current_task)

    trainer = EPITrainer(
        model=model, args=_args(tmp_path), train_dataset=data, epi_config=cfg, callbacks=[Spy()]
    )
    trainer.train()
    iso = trainer.epi_isolation
    assert sorted(iso.tracker.tasks) == [0, 1]
    assert iso.mask.owners is not None and set(iso.mask.owners) == {0, 1}
    assert set(seen) == {0, 1}
    with pytest.raises(MissingTaskIdError, match="task_id"):
        EPITrainer(
            model=model,
            args=_args(tmp_path / "x"),
            train_dataset=_dataset(model.config.vocab_size, 64),
            epi_config=cfg,
        ).train()


def test_epi_sft_trainer_keeps_task_id(tmp_path, tiny_tokenizer, make_tiny_causal_lm):
    from trl import SFTConfig

    from epi import EPISFTTrainer

    model = make_tiny_causal_lm("llama")
    rows = [
        {"prompt": f"add {i} and {i + 1}", "completion": f" {2 * i + 1}", "task_id": i % 2}
        for i in range(32)
    ]
    args = training_args(
        SFTConfig,
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=4,
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        max_length=32,
    )
    trainer = EPISFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tiny_tokenizer,
        epi_config=EPIConfig(isolation_ratio=0.1, update_interval=2, track="per_task"),
    )
    trainer.train()
    assert sorted(trainer.epi_isolation.tracker.tasks) == [0, 1]
    assert len(trainer.epi_isolation.history) == 2


def test_mixed_task_window_raises(make_tiny_causal_lm, tmp_path):
    from epi import MixedTaskWindowError

    class NoTaskSampler(EPITrainer):
        get_train_dataloader = Trainer.get_train_dataloader  # bypasses TaskHomogeneousBatchSampler

    model = make_tiny_causal_lm("llama")
    cfg = EPIConfig(isolation_ratio=0.1, update_interval=2, track="per_task")
    trainer = NoTaskSampler(
        model=model,
        args=_args(tmp_path, per_device_train_batch_size=1, gradient_accumulation_steps=4),
        train_dataset=_dataset(model.config.vocab_size, 64, n_tasks=2),
        epi_config=cfg,
    )
    with pytest.raises(MixedTaskWindowError, match="window mixes task"):
        trainer.train()
