from __future__ import annotations

import pytest
import torch

from epi import EPICallback, EPIConfig, EvolvingIsolation, PeftTargetError, select_parameters

peft = pytest.importorskip("peft")


def _lora(make_tiny_causal_lm):
    model = make_tiny_causal_lm("llama")
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    return peft.get_peft_model(model, cfg)


def test_lora_run_tracks_only_adapter_tensors(make_tiny_causal_lm, tmp_path):
    import datasets
    from transformers import Trainer

    from papercore.trainer_args import training_args

    model = _lora(make_tiny_causal_lm)
    epi = EPICallback(EPIConfig(isolation_ratio=0.1, update_interval=2))
    ids = torch.randint(
        5, model.config.vocab_size, (32, 12), generator=torch.Generator().manual_seed(0)
    )
    data = datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "labels": ids.tolist(), "attention_mask": [[1] * 12] * 32}
    )
    args = training_args(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=4,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1000,
        learning_rate=1e-2,
        weight_decay=0.1,
    )
    base_before = {
        n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad
    }
    Trainer(model=model, args=args, train_dataset=data, callbacks=[epi]).train()
    names = list(epi.masks)
    assert names and all(("lora_A" in n or "lora_B" in n) for n in names)
    assert len(names) == 2 * 2 * 2  # 2 layers × (q_proj, v_proj) × (A, B)
    assert epi.isolation.mask.count() > 0 and len(epi.isolation.history) == 2
    for n, p in model.named_parameters():
        if n in base_before:
            assert torch.equal(p.detach(), base_before[n])


def test_base_weight_targets_raise(make_tiny_causal_lm):
    model = _lora(make_tiny_causal_lm)
    with pytest.raises(PeftTargetError, match="base weights"):
        EvolvingIsolation(model, EPIConfig(target="base"))
    with pytest.raises(PeftTargetError, match="frozen base weight"):
        select_parameters(model, EPIConfig(include=[r"q_proj"]))
    ok = select_parameters(model, EPIConfig(include=[r"q_proj\.lora_"]))
    assert all("lora_" in n for n in ok)
