from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_cls_factory(tiny_encoder_tokenizer):
    """Build a tiny BertForSequenceClassification (hidden 32, 2 layers) with a fixed init."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    def make(num_labels: int = 3, seed: int = 0):
        cfg = BertConfig(
            vocab_size=len(tiny_encoder_tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            num_labels=num_labels,
            pad_token_id=tiny_encoder_tokenizer.pad_token_id,
        )
        torch.manual_seed(seed)
        return BertForSequenceClassification(cfg)

    return make


@pytest.fixture(scope="session")
def small_cls_data():
    from kls.data import make_synthetic_classification

    return make_synthetic_classification(n_classes=3, n_per_class=16, n_test_per_class=4, seed=1)
