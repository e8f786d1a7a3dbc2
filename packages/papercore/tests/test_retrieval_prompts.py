"""FaissRetriever routes documents through ``encode_document`` and queries through ``encode_query``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from papercore.errors import MalformedInputError
from papercore.retrieval import FaissRetriever

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None,
    reason='needs faiss: pip install "papercore[retrieval]"',
)


class AsymmetricEncoder:
    """Records which method encoded what, with which prompt and max_seq_length.

    Embeds a text as a one-hot of its first letter, and a *query* encoded through ``encode_query``
    as the one-hot of the document it is meant to find ("q:a" → "a"): only the right routing ranks
    the right document first.
    """

    def __init__(self) -> None:
        self.max_seq_length = 128
        self.log: list[tuple[str, tuple[str, ...], dict, int]] = []

    def _emb(self, texts, shift: int = 0):
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, (ord(t[-1]) - ord("a") + shift) % 26] = 1.0
        return out

    def encode(self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False, **kw):
        self.log.append(("encode", tuple(texts), kw, self.max_seq_length))
        return self._emb(texts, shift=1)  # the symmetric path ranks the wrong document

    def encode_query(
        self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False, **kw
    ):
        self.log.append(("encode_query", tuple(texts), kw, self.max_seq_length))
        return self._emb(texts)

    def encode_document(
        self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False, **kw
    ):
        self.log.append(("encode_document", tuple(texts), kw, self.max_seq_length))
        return self._emb(texts)


class OldEncoder:
    """Only ``encode`` (sentence-transformers < 5 or a custom encoder)."""

    def __init__(self) -> None:
        self.kwargs: list[dict] = []

    def encode(self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False, **kw):
        self.kwargs.append(kw)
        return np.eye(4, dtype=np.float32)[[ord(t[-1]) - ord("a") for t in texts]]


CORPUS = {"da": "doc a", "db": "doc b", "dc": "doc c"}


def test_documents_and_queries_take_their_own_method_prompt_and_length():
    enc = AsymmetricEncoder()
    r = FaissRetriever(
        enc,
        document_prompt="passage: ",
        query_prompt_name="query",
        query_max_length=32,
        document_max_length=256,
    )
    r.index(CORPUS)
    run = r.search({"q1": "q:b"}, k=1)
    assert list(run["q1"]) == ["db"]  # plain encode would have returned "dc"
    (m1, texts1, kw1, len1), (m2, texts2, kw2, len2) = enc.log
    assert (m1, texts1, kw1, len1) == (
        "encode_document",
        ("doc a", "doc b", "doc c"),
        {"prompt": "passage: "},
        256,
    )
    assert (m2, texts2, kw2, len2) == ("encode_query", ("q:b",), {"prompt_name": "query"}, 32)
    assert enc.max_seq_length == 128  # restored after each call
    assert r.config()["query_prompt_name"] == "query" and r.config()["document_max_length"] == 256


def test_prompts_and_lengths_survive_save_and_load(tmp_path):
    enc = AsymmetricEncoder()
    r = FaissRetriever(enc, query_prompt="query: ", query_max_length=16)
    r.index(CORPUS)
    r.save(tmp_path / "idx")
    back = FaissRetriever.load(tmp_path / "idx", enc)
    assert (back.query_prompt, back.query_max_length, back.document_prompt) == ("query: ", 16, None)
    enc.log.clear()
    back.search({"q": "q:a"}, k=1)
    assert enc.log == [("encode_query", ("q:a",), {"prompt": "query: "}, 16)]


def test_encoders_without_encode_query_fall_back_to_encode():
    enc = OldEncoder()
    r = FaissRetriever(enc)
    r.index({"a": "xa", "b": "xb"})
    assert list(r.search({"q": "yb"}, k=1)["q"]) == ["b"]
    assert enc.kwargs == [{}, {}]  # no prompt keyword reaches an encoder that may not take it
    FaissRetriever(enc, query_prompt="query: ").search  # noqa: B018  (constructing is fine)
    r2 = FaissRetriever(enc, query_prompt="query: ")
    r2.index({"a": "xa"})
    r2.search({"q": "ya"}, k=1)
    assert enc.kwargs[-1] == {"prompt": "query: "}  # an explicit prompt is passed to encode


def test_bad_prompt_and_length_arguments():
    with pytest.raises(MalformedInputError, match="query_max_length must be an integer ≥ 1"):
        FaissRetriever(None, query_max_length=0)
    with pytest.raises(MalformedInputError, match="document_prompt must be a string"):
        FaissRetriever(None, document_prompt=3)
    r = FaissRetriever(OldEncoder(), document_max_length=8)
    with pytest.raises(MalformedInputError, match="needs an encoder with a max_seq_length"):
        r.index({"a": "xa"})
