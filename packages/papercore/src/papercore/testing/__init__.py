"""Offline test helpers: tiny tokenizers and models built from config, trained tiny LMs, pytest fixtures."""

from papercore.testing.builders import (
    CAUSAL_SPECIAL_TOKENS,
    CHATML_TEMPLATE,
    build_causal_tokenizer,
    build_encoder_tokenizer,
    build_word_tokenizer,
    config_fingerprint,
    corpus_lines,
    minilm_path,
    save_model_dir,
    tiny_causal_lm,
    tiny_causal_lm_config,
    tiny_encoder,
    tiny_sentence_transformer,
)
from papercore.testing.training import (
    CountingTask,
    ModSumTask,
    SyntheticTask,
    TrainSettings,
    greedy_accuracy,
    train_tiny_lm,
)

__all__ = [
    "CAUSAL_SPECIAL_TOKENS",
    "CHATML_TEMPLATE",
    "CountingTask",
    "ModSumTask",
    "SyntheticTask",
    "TrainSettings",
    "build_causal_tokenizer",
    "build_encoder_tokenizer",
    "build_word_tokenizer",
    "config_fingerprint",
    "corpus_lines",
    "greedy_accuracy",
    "minilm_path",
    "save_model_dir",
    "tiny_causal_lm",
    "tiny_causal_lm_config",
    "tiny_encoder",
    "tiny_sentence_transformer",
    "train_tiny_lm",
]
