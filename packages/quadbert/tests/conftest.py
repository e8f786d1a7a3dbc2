"""Shared fixtures: a tiny BERT sentence-transformer and the synthetic retrieval data."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_st_dir(tmp_path_factory):
    """Directory of a tiny BERT (hidden 64, 2 layers) saved once for the session."""
    from papercore.testing import tiny_sentence_transformer

    path = tmp_path_factory.mktemp("tiny-st")
    tiny_sentence_transformer(path)
    return path


@pytest.fixture
def tiny_st(tiny_st_dir):
    """A fresh tiny BERT sentence-transformer (Transformer + mean pooling, no Normalize), CPU, eval mode."""
    from papercore.testing import tiny_sentence_transformer

    return tiny_sentence_transformer(tiny_st_dir).eval()


@pytest.fixture(scope="session")
def synthetic():
    """The default synthetic collection (288 docs; train / test queries on disjoint entities)."""
    from papercore.retrieval import make_synthetic_retrieval

    return make_synthetic_retrieval(seed=0)


@pytest.fixture(scope="session")
def st_model_dir(tiny_st_dir, tmp_path_factory):
    """The tiny BERT saved as a full sentence-transformers model directory (modules.json)."""
    from papercore.testing import tiny_sentence_transformer

    path = tmp_path_factory.mktemp("tiny-st-full")
    tiny_sentence_transformer(tiny_st_dir).save(str(path))
    return path
