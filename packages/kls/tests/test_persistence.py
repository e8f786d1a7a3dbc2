"""Saving and loading fitted smoothers; tokenizer specs; the leakage guard; the variant modules."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from kls import KeywordLabelSmoother, UniformLabelSmoother
from kls.errors import ConfigError, NotFittedError, OutputExistsError, TokenizerRequiredError
from kls.smoothing import (
    Chi2KeywordSmoother,
    CTFIDFKeywordSmoother,
    KLSConfig,
    ReferenceKeywordSmoother,
)

TEXTS = ["a b", "a a c", "b d", "d d e", "c e", "e f", "g h"]
LABELS = ["A", "A", "B", "B", "C", "C", "D"]
PROBE = ["a b", "d e f", "zzz", "a g", "h"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"alpha": 0.2, "exclude_gold": True},
        {"keyword_source": "ctfidf", "top_k": 3, "class_prior_correction": True},
        {"keyword_source": "chi2", "relevance": "tfidf_cosine", "alpha": 0.1},
        {"keyword_source": "label_names", "label_names": {"A": "a", "B": "d", "C": "e", "D": "h"}},
        {
            "keyword_source": "given",
            "keywords": {"A": {"a": 1.0}, "B": {"d": 2.0}, "C": {"e": 1}, "D": {"g": 1}},
        },
    ],
)
def test_save_and_load_round_trip_gives_identical_soft_labels(tmp_path, kwargs):
    sm = KeywordLabelSmoother(**kwargs).fit(TEXTS, LABELS)
    sm.save_pretrained(tmp_path / "sm")
    doc = json.loads((tmp_path / "sm" / "config.json").read_text())
    assert doc["class"] == type(sm).__name__ and doc["classes"] == ["A", "B", "C", "D"]
    back = KeywordLabelSmoother.from_pretrained(tmp_path / "sm")
    assert type(back) is type(sm) and back.config == sm.config
    assert back.keywords_ == sm.keywords_
    labels = ["A", "B", "C", "A", "D"]
    np.testing.assert_array_equal(back.transform(PROBE, labels), sm.transform(PROBE, labels))


def test_save_refuses_to_overwrite_and_load_reports_bad_directories(tmp_path):
    sm = KeywordLabelSmoother().fit(TEXTS, LABELS)
    sm.save_pretrained(tmp_path / "sm")
    with pytest.raises(OutputExistsError, match="non-empty directory") as ei:
        sm.save_pretrained(tmp_path / "sm")
    assert isinstance(ei.value, FileExistsError) and isinstance(ei.value, ValueError)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        sm.save_pretrained(tmp_path / "file")
    sm.save_pretrained(tmp_path / "sm", overwrite=True)  # explicit overwrite works
    (tmp_path / "empty").mkdir()
    sm.save_pretrained(tmp_path / "empty")  # an empty directory is fine
    with pytest.raises(ConfigError, match=r"config\.json"):
        KeywordLabelSmoother.from_pretrained(tmp_path / "nowhere")
    UniformLabelSmoother(0.1).fit(TEXTS, LABELS).save_pretrained(tmp_path / "u")
    with pytest.raises(ConfigError, match=r"holds a UniformLabelSmoother"):
        KeywordLabelSmoother.from_pretrained(tmp_path / "u")
    with pytest.raises(NotFittedError, match="fit before"):
        KeywordLabelSmoother().save_pretrained(tmp_path / "unfitted")


def test_uniform_smoother_round_trip(tmp_path):
    u = UniformLabelSmoother(0.2).fit(TEXTS, LABELS)
    u.save_pretrained(tmp_path / "u")
    back = UniformLabelSmoother.from_pretrained(tmp_path / "u")
    np.testing.assert_array_equal(back.transform(PROBE, LABELS[:5]), u.transform(PROBE, LABELS[:5]))


def test_tokenizer_specs_char_and_transformers_round_trip(tmp_path, tiny_encoder_tokenizer):
    zh = ["我喜欢猫", "猫很可爱", "他喜欢狗", "狗很忠诚", "鱼在水里"]
    y = ["cat", "cat", "dog", "dog", "fish"]
    with pytest.raises(TokenizerRequiredError, match="'char'"):
        KeywordLabelSmoother().fit(zh, y)
    sm = KeywordLabelSmoother(tokenizer="char").fit(zh, y)
    assert sm.config.tokenizer == "char" and "猫" in sm.keywords_["cat"]
    assert sm.distribution(["猫"])[0].argmax() == 0
    sm.save_pretrained(tmp_path / "zh")
    back = KeywordLabelSmoother.from_pretrained(tmp_path / "zh")
    np.testing.assert_array_equal(back.distribution(zh), sm.distribution(zh))
    # a transformers tokenizer object is saved beside the smoother and reloaded
    texts = ["Hello world!", "hello there", "the cat sat", "The cat ran"]
    hf = KeywordLabelSmoother(tokenizer=tiny_encoder_tokenizer).fit(texts, [0, 0, 1, 1])
    hf.save_pretrained(tmp_path / "hf")
    assert (tmp_path / "hf" / "tokenizer").is_dir()
    back = KeywordLabelSmoother.from_pretrained(tmp_path / "hf")
    np.testing.assert_allclose(back.distribution(texts), hf.distribution(texts), rtol=1e-12)
    # ... or named by its directory (what `kls --tokenizer DIR` does)
    tiny_encoder_tokenizer.save_pretrained(str(tmp_path / "tokdir"))
    named = KeywordLabelSmoother(tokenizer=str(tmp_path / "tokdir")).fit(texts, [0, 0, 1, 1])
    np.testing.assert_allclose(named.distribution(texts), hf.distribution(texts), rtol=1e-12)
    # a plain callable cannot be saved: loading asks for it
    cb = KeywordLabelSmoother(tokenizer=list).fit(zh, y)
    cb.save_pretrained(tmp_path / "cb")
    with pytest.raises(ConfigError, match="tokenizer="):
        KeywordLabelSmoother.from_pretrained(tmp_path / "cb")
    back = KeywordLabelSmoother.from_pretrained(tmp_path / "cb", tokenizer=list)
    np.testing.assert_array_equal(back.distribution(zh), cb.distribution(zh))


def test_variants_are_their_own_classes_with_one_config():
    assert type(KeywordLabelSmoother()) is ReferenceKeywordSmoother
    assert type(KeywordLabelSmoother("ctfidf")) is CTFIDFKeywordSmoother
    assert isinstance(Chi2KeywordSmoother(), KeywordLabelSmoother)
    cfg = KLSConfig(keyword_source="chi2", top_k=7, alpha=0.1)
    sm = KeywordLabelSmoother(config=cfg)
    assert type(sm) is Chi2KeywordSmoother and sm.top_k == 7 and sm.alpha == 0.1
    assert KLSConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="implements keyword_source='ctfidf'"):
        CTFIDFKeywordSmoother("chi2")
    with pytest.raises(TypeError, match="unknown argument"):
        KeywordLabelSmoother(topk=3)
    a = CTFIDFKeywordSmoother(top_k=3).fit(TEXTS, LABELS).transform(PROBE)
    b = KeywordLabelSmoother("ctfidf", top_k=3).fit(TEXTS, LABELS).transform(PROBE)
    np.testing.assert_array_equal(a, b)


def test_leakage_guard_catches_shuffled_and_partial_fit_texts(caplog):
    sm = KeywordLabelSmoother().fit(TEXTS, LABELS)
    assert sm.fit_overlap(TEXTS[::-1]) == 1.0
    with caplog.at_level(logging.WARNING, logger="kls"):
        assert sm.warn_if_fit_texts([*TEXTS[::-1], "new text"], what="test") is True
    assert "texts KLS was fitted on" in caplog.text
    assert sm.warn_if_fit_texts(["x y", "y z", "a b"]) is False  # 1 of 3 < 0.5
