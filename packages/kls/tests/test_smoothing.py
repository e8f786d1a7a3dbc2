"""KLS variants, mixing, the classic-LS reduction, keyword extraction, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kls import KeywordLabelSmoother, UniformLabelSmoother, validate_soft_labels
from kls.data import make_synthetic_classification, planted_keywords
from kls.errors import (
    EmptyInputError,
    InvalidSoftLabelError,
    OutOfRangeError,
    SingleClassError,
    TokenizerRequiredError,
    TooFewExamplesError,
    UnknownLabelError,
)

TEXTS = ["a b", "a a c", "b d", "d d e", "c e", "e f"]
LABELS = [0, 0, 1, 1, 2, 2]


@pytest.fixture(scope="module")
def synth():
    return make_synthetic_classification(n_classes=6, n_per_class=60, n_test_per_class=10, seed=3)


@pytest.mark.parametrize("source", ["reference", "ctfidf", "chi2"])
def test_soft_label_rows_are_distributions_with_gold_mass(synth, source):
    tr = synth["train"]
    alpha = 0.3
    sm = KeywordLabelSmoother(source, alpha=alpha)
    Y = sm.fit_transform(tr["text"], tr["label"])
    assert Y.shape == (len(tr), 6)
    np.testing.assert_allclose(Y.sum(axis=1), 1.0, atol=1e-6)
    assert (Y >= 0).all()
    gold = Y[np.arange(len(tr)), tr["label"]]
    assert (gold >= 1 - alpha - 1e-9).all()
    assert (Y.argmax(axis=1) == np.asarray(tr["label"])).all()


def test_reference_q_puts_most_mass_on_the_gold_class(synth):
    tr = synth["train"]
    q = KeywordLabelSmoother().fit_transform(tr["text"], tr["label"])
    assert (q.argmax(axis=1) == np.asarray(tr["label"])).mean() > 0.9
    # graded: the neighbour class (sharing 30 % of keywords) gets more mass than a far class
    y = np.asarray(tr["label"])
    nb = q[np.arange(len(y)), (y + 1) % 6].mean()
    far = q[np.arange(len(y)), (y + 3) % 6].mean()
    assert nb > far


def test_alpha_zero_is_exactly_one_hot(synth):
    tr = synth["train"]
    Y = KeywordLabelSmoother("ctfidf", alpha=0.0).fit_transform(tr["text"], tr["label"])
    onehot = np.eye(6)[tr["label"]]
    assert np.array_equal(Y, onehot)


def test_uniform_q_equals_classic_label_smoothing():
    eps = 0.1
    sm = KeywordLabelSmoother("ctfidf", alpha=eps).fit(TEXTS * 2, LABELS * 2)
    sm.distribution = lambda texts: np.full((len(texts), 3), 1 / 3)  # a uniform q
    kls_targets = sm.transform(TEXTS, LABELS)
    ls = UniformLabelSmoother(eps).fit_transform(TEXTS, LABELS)
    np.testing.assert_allclose(kls_targets, ls, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ls[0], [1 - eps + eps / 3, eps / 3, eps / 3])


def test_keywords_are_deterministic_and_planted_ones_rank_top5(synth):
    tr = synth["train"]
    planted = planted_keywords(n_classes=6, overlap=0.3, seed=3)
    for source in ("ctfidf", "chi2", "reference"):
        a = KeywordLabelSmoother(source).fit(tr["text"], tr["label"]).keywords_
        b = KeywordLabelSmoother(source).fit(tr["text"], tr["label"]).keywords_
        assert a == b
        for c in range(6):
            top5 = list(a[c])[:5]
            assert set(top5) <= set(planted[c]), (source, c, top5)


def test_keywords_use_only_the_fit_split(synth):
    tr, te = synth["train"], synth["test"]
    sm = KeywordLabelSmoother("ctfidf").fit(tr["text"], tr["label"])
    before = sm.keywords_
    sm.transform(te["text"])
    assert sm.keywords_ == before
    assert sm.warn_if_fit_texts(tr["text"]) is True
    assert sm.warn_if_fit_texts(te["text"]) is False


def test_label_names_and_given_keywords():
    texts = ["sport ball goal", "sport team", "music song", "music band", "news x", "news y"]
    labels = ["sport", "sport", "music", "music", "news", "news"]
    q = KeywordLabelSmoother("label_names", tau=0.5).fit(texts, labels).distribution(["sport goal"])
    assert q[0].argmax() == 2  # classes sorted: music, news, sport
    given = {"music": {"song": 1.0}, "news": {"x": 2.0}, "sport": {"goal": 1.0, "ball": 1.0}}
    sm = KeywordLabelSmoother("given", keywords=given).fit(texts, labels)
    assert sm.keywords_["sport"] == {"goal": 0.5, "ball": 0.5}
    assert sm.distribution(["a song"])[0].argmax() == 0


def test_tfidf_cosine_relevance_and_uniform_fallback():
    sm = KeywordLabelSmoother("ctfidf", relevance="tfidf_cosine").fit(TEXTS * 2, LABELS * 2)
    r = sm.relevance(["a a", "zzz"])
    assert r[0].argmax() == 0 and 0 < r[0, 0] <= 1 + 1e-9
    q = sm.distribution(["zzz"])
    np.testing.assert_allclose(q, [[1 / 3] * 3])
    assert sm.stats_["uniform_rows"] == 1


def test_exclude_gold_keeps_gold_mass_exactly():
    sm = KeywordLabelSmoother("ctfidf", alpha=0.2, exclude_gold=True).fit(TEXTS * 2, LABELS * 2)
    Y = sm.transform(TEXTS, LABELS)
    np.testing.assert_allclose(Y[np.arange(6), LABELS], 0.8, atol=1e-12)
    np.testing.assert_allclose(Y.sum(axis=1), 1.0)


def test_class_prior_correction_moves_mass_to_rare_classes():
    texts = TEXTS[:2] * 5 + TEXTS[2:]
    labels = LABELS[:2] * 5 + LABELS[2:]
    plain = KeywordLabelSmoother().fit(texts, labels).distribution(["c"])
    corr = KeywordLabelSmoother(class_prior_correction=True).fit(texts, labels).distribution(["c"])
    assert corr[0, 2] / corr[0, 0] > plain[0, 2] / plain[0, 0]


def test_transformers_tokenizer_and_callable_are_pluggable(tiny_encoder_tokenizer):
    texts = ["Hello world!", "hello there", "the cat sat", "The cat ran"]
    sm = KeywordLabelSmoother(tokenizer=tiny_encoder_tokenizer).fit(texts, [0, 0, 1, 1])
    pieces = set(
        tiny_encoder_tokenizer.tokenize(texts[0]) + tiny_encoder_tokenizer.tokenize(texts[1])
    )
    assert set(sm.keywords_[0]) == pieces  # statistics are over wordpieces
    assert "Hello" not in sm.keywords_[0]
    sm2 = KeywordLabelSmoother(tokenizer=lambda t: list(t.replace(" ", ""))).fit(
        texts, [0, 0, 1, 1]
    )
    assert "H" in sm2.keywords_[0] or "h" in sm2.keywords_[0]


def test_cjk_without_tokenizer_raises_and_with_tokenizer_works():
    texts = ["我喜欢猫", "猫很可爱", "他喜欢狗", "狗很忠诚"]
    with pytest.raises(TokenizerRequiredError, match="CJK"):
        KeywordLabelSmoother().fit(texts, [0, 0, 1, 1])
    sm = KeywordLabelSmoother(tokenizer=list).fit(texts, [0, 0, 1, 1])
    assert sm.distribution(["猫"])[0].argmax() == 0
    with pytest.raises(TokenizerRequiredError):
        KeywordLabelSmoother().fit(["cat a", "cat b", "dog a", "dog b"], [0, 0, 1, 1]).transform(
            ["狗"]
        )


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(EmptyInputError, match="no texts"):
        KeywordLabelSmoother().fit([], [])
    with pytest.raises(EmptyInputError, match="no tokens"):
        KeywordLabelSmoother().fit(["", " ", "", "  "], [0, 0, 1, 1])
    with pytest.raises(SingleClassError, match="at least 2 classes"):
        KeywordLabelSmoother().fit(["a", "b"], [1, 1])
    sm = KeywordLabelSmoother(alpha=0.1).fit(TEXTS, LABELS)
    with pytest.raises(UnknownLabelError, match=r"\[7, 9\]") as ei:
        sm.transform(["a", "b"], [9, 7])
    assert isinstance(ei.value, KeyError)
    with pytest.raises(NotImplementedError, match="multi-label"):
        KeywordLabelSmoother().fit(TEXTS, [[0, 1]] * 6)
    with pytest.raises(ValueError, match="labels"):
        KeywordLabelSmoother().fit(TEXTS, LABELS[:3])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 1.0},
        {"alpha": -0.1},
        {"alpha": math.nan},
        {"tau": 0.0},
        {"tau": -1.0},
        {"top_k": 0},
        {"k1": 0.0},
        {"b": 1.5},
    ],
)
def test_hyperparameters_out_of_range(kwargs):
    with pytest.raises(OutOfRangeError):
        KeywordLabelSmoother(**kwargs)


def test_given_keyword_weights_must_be_finite():
    with pytest.raises(OutOfRangeError, match="finite"):
        KeywordLabelSmoother("given", keywords={0: {"a": math.nan}})
    with pytest.raises(UnknownLabelError, match="not in the training labels"):
        KeywordLabelSmoother("given", keywords={5: {"a": 1.0}}).fit(TEXTS, LABELS)


def test_validate_soft_labels_names_the_bad_row():
    ok = validate_soft_labels([[0.5, 0.5], [1.0, 0.0]], 2)
    assert ok.shape == (2, 2)
    with pytest.raises(InvalidSoftLabelError, match=r"row 1 sums to 0\.9"):
        validate_soft_labels([[0.5, 0.5], [0.4, 0.5]], 2)
    with pytest.raises(InvalidSoftLabelError, match="row 0 has length 3, expected 2"):
        validate_soft_labels([[0.2, 0.3, 0.5]], 2)
    with pytest.raises(InvalidSoftLabelError, match="row 0 contains NaN"):
        validate_soft_labels(np.array([[math.nan, 1.0]]), 2)
    with pytest.raises(InvalidSoftLabelError, match="negative"):
        validate_soft_labels([[1.5, -0.5]], 2)


def test_to_dataset_adds_a_soft_label_column(synth):
    ds = (
        KeywordLabelSmoother()
        .fit(synth["train"]["text"], synth["train"]["label"])
        .to_dataset(synth["test"])
    )
    assert ds.column_names == ["text", "label", "soft_label"]
    assert len(ds[0]["soft_label"]) == 6
    assert sum(ds[0]["soft_label"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("source", ["reference", "ctfidf", "chi2"])
def test_long_tailed_label_sets_with_single_text_classes_are_accepted(source):
    # 18 labels, Zipf-like sizes down to one training text (a real docstring set looked like this)
    rng = np.random.default_rng(0)
    sizes = [12, 8, 6, 5, 4, 3, 3, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    texts, labels = [], []
    for c, k in enumerate(sizes):
        for _ in range(k):
            words = [f"kw{c}", f"kw{c}b"] + [f"f{int(rng.integers(30))}" for _ in range(4)]
            texts.append(" ".join(rng.permutation(words)))
            labels.append(f"label{c}")
    sm = KeywordLabelSmoother(source, alpha=0.2).fit(texts, labels)
    assert len(sm.classes_) == 18
    Y = sm.transform(texts, labels)
    validate_soft_labels(Y, 18)
    gold = np.asarray([sm.classes_.index(y) for y in labels])
    assert (Y.argmax(axis=1) == gold).all()
    q = KeywordLabelSmoother(source).fit(texts, labels).distribution(["kw17 kw17b"])
    assert sm.classes_[int(q[0].argmax())] == "label17"  # a one-text class gets its own keywords


def test_variant_without_any_keyword_for_a_class_still_raises_too_few_examples():
    with pytest.raises(TooFewExamplesError, match="no extractable keyword"):
        KeywordLabelSmoother("given", keywords={0: {"a": 1.0}}).fit(["a b", "c d"], [0, 1])
