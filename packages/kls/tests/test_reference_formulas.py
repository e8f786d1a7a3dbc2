"""The reference KLS (§2.0) against values worked out by hand on a 3-label toy corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kls import KeywordLabelSmoother

TOY_TEXTS = ["a b", "a a c", "b d", "d d e", "c e", "e f"]
TOY_LABELS = ["A", "A", "B", "B", "C", "C"]

# Counts by hand:  label A = "a b" + "a a c"  -> a:3 b:1 c:1 (len 5)
#                  label B = "b d" + "d d e"  -> b:1 d:3 e:1 (len 5)
#                  label C = "c e" + "e f"    -> c:1 e:2 f:1 (len 4)
# labels containing each word L_w: a1 b2 c2 d1 e2 f1; instance df: a2 b2 c2 d2 e3 f1; N = 6.
K1, B, K2 = 2.0, 0.75, 2.0
AVGLEN = (5 + 5 + 4) / 3
K = {lab: K1 * (1 - B + B * n / AVGLEN) for lab, n in {"A": 5, "B": 5, "C": 4}.items()}
F = {"A": {"a": 3, "b": 1, "c": 1}, "B": {"b": 1, "d": 3, "e": 1}, "C": {"c": 1, "e": 2, "f": 1}}
LW = {"a": 1, "b": 2, "c": 2, "d": 1, "e": 2, "f": 1}
DF = {"a": 2, "b": 2, "c": 2, "d": 2, "e": 3, "f": 1}
AVG_TOKEN_LEN = (2 + 3 + 2 + 3 + 2 + 2) / 6


def wlr(lab: str, w: str) -> float:
    f = F[lab].get(w, 0)
    if f == 0:
        return 0.0
    return f * K1 / (f + K[lab]) * (math.log(3 / LW[w]) + 1)


def wir(w: str, fx: int) -> float:
    return (math.log(6 / DF[w]) + 1) * (fx * K2 / (fx + K2))


def hand_scores(text: str) -> list[float]:
    toks = text.split()
    counts = {w: toks.count(w) for w in set(toks)}
    return [sum(wlr(lab, w) * wir(w, fx) for w, fx in counts.items() if w in DF) for lab in "ABC"]


def hand_q(text: str) -> list[float]:
    s = hand_scores(text)
    e = [math.exp(v / AVG_TOKEN_LEN) for v in s]
    return [v / sum(e) for v in e]


@pytest.fixture(scope="module")
def smoother():
    return KeywordLabelSmoother().fit(TOY_TEXTS, TOY_LABELS)


def test_scores_match_hand_computation(smoother):
    # "a b": s_A = wlr_A(a)·wir(a) + wlr_A(b)·wir(b), s_B = wlr_B(b)·wir(b), s_C = 0
    s_a = 3 * 2 / (3 + K["A"]) * (math.log(3) + 1) * (math.log(3) + 1) * (2 / 3)
    s_a += 1 * 2 / (1 + K["A"]) * (math.log(1.5) + 1) * (math.log(3) + 1) * (2 / 3)
    s_b = 1 * 2 / (1 + K["B"]) * (math.log(1.5) + 1) * (math.log(3) + 1) * (2 / 3)
    np.testing.assert_allclose(smoother.relevance(["a b"])[0], [s_a, s_b, 0.0], rtol=1e-12)
    np.testing.assert_allclose(
        smoother.relevance(TOY_TEXTS), [hand_scores(t) for t in TOY_TEXTS], rtol=1e-12
    )


def test_repeated_word_uses_saturated_count(smoother):
    # "a a c": f_x(a) = 2 -> wic = 2·2/(2+2) = 1
    s = smoother.relevance(["a a c"])[0]
    expect_a = 3 * 2 / (3 + K["A"]) * (math.log(3) + 1) * (math.log(3) + 1) * 1.0
    expect_a += 1 * 2 / (1 + K["A"]) * (math.log(3 / 2) + 1) * (math.log(3) + 1) * (2 / 3)
    assert s[0] == pytest.approx(expect_a, rel=1e-12)


def test_distribution_is_softmax_over_average_length(smoother):
    assert smoother.avg_token_len_ == pytest.approx(AVG_TOKEN_LEN)
    q = smoother.transform(TOY_TEXTS)
    np.testing.assert_allclose(q, [hand_q(t) for t in TOY_TEXTS], rtol=1e-12)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)
    assert smoother.classes_ == ["A", "B", "C"]


def test_label_word_weights_use_k1_numerator(smoother):
    # wlc numerator is f·k1 (not f·(k1+1)); the fitted keyword dict holds wlr_i(w)
    assert smoother.keywords_["A"]["a"] == pytest.approx(wlr("A", "a"), rel=1e-12)
    assert smoother.keywords_["C"]["e"] == pytest.approx(wlr("C", "e"), rel=1e-12)
    assert "d" not in smoother.keywords_["A"]


def test_unseen_words_are_skipped(smoother):
    q = smoother.transform(["zzz yyy"])
    np.testing.assert_allclose(q, [[1 / 3] * 3], atol=1e-12)
    np.testing.assert_allclose(smoother.relevance(["a zzz"]), smoother.relevance(["a"]), rtol=1e-12)


def test_custom_constants_change_values():
    s = KeywordLabelSmoother(k1=1.2, b=0.0, k2=1.0, tau=1.0).fit(TOY_TEXTS, TOY_LABELS)
    # b = 0: K_i = k1 for every label; "d" occurs only in B (f = 3), x = "d": wic = 1·1/(1+1)
    expect = 3 * 1.2 / (3 + 1.2) * (math.log(3) + 1) * (math.log(6 / 2) + 1) * 0.5
    assert s.relevance(["d"])[0, 1] == pytest.approx(expect, rel=1e-12)
    e = np.exp([0.0, expect, 0.0])
    np.testing.assert_allclose(s.transform(["d"])[0], e / e.sum(), rtol=1e-12)


def _hand_reference(train_texts, train_labels, texts, k1=2.0, b=0.75, k2=2.0):
    """The §2.0 formulas in plain Python dicts, for any toy corpus (no numpy, no sparse)."""
    labels = sorted(set(train_labels))
    F_ = {lab: {} for lab in labels}
    for t, lab in zip(train_texts, train_labels, strict=True):
        for w in t.split():
            F_[lab][w] = F_[lab].get(w, 0) + 1
    len_ = {lab: sum(F_[lab].values()) for lab in labels}
    avglen = sum(len_.values()) / len(labels)
    K_ = {lab: k1 * (1 - b + b * len_[lab] / avglen) for lab in labels}
    vocab = {w for t in train_texts for w in t.split()}
    L_w = {w: sum(1 for lab in labels if w in F_[lab]) for w in vocab}
    df = {w: sum(1 for t in train_texts if w in t.split()) for w in vocab}
    n = len(train_texts)
    avg_len = sum(len(t.split()) for t in train_texts) / n
    out = []
    for text in texts:
        toks = text.split()
        s = []
        for lab in labels:
            v = 0.0
            for w in set(toks):
                if w not in vocab or w not in F_[lab]:
                    continue
                f = F_[lab][w]
                wlr_ = f * k1 / (f + K_[lab]) * (math.log(len(labels) / L_w[w]) + 1)
                fx = toks.count(w)
                wir_ = (math.log(n / df[w]) + 1) * (fx * k2 / (fx + k2))
                v += wlr_ * wir_
            s.append(v)
        e = [math.exp(x / avg_len) for x in s]
        out.append([x / sum(e) for x in e])
    return out


def test_hand_reference_reproduces_the_toy_values():
    np.testing.assert_allclose(
        _hand_reference(TOY_TEXTS, TOY_LABELS, TOY_TEXTS),
        [hand_q(t) for t in TOY_TEXTS],
        rtol=1e-12,
    )


def test_long_tailed_labels_with_single_text_classes_match_the_formulas():
    # a head class with 4 texts, a mid class with 2, and two tail classes with ONE text each
    texts = ["a b a", "a c", "a b d", "b a", "d e", "e d d", "f g", "h f i"]
    labels = ["head", "head", "head", "head", "mid", "mid", "tail1", "tail2"]
    sm = KeywordLabelSmoother().fit(texts, labels)
    assert sm.classes_ == ["head", "mid", "tail1", "tail2"]
    assert sm.class_counts_.tolist() == [4, 2, 1, 1]
    probe = [*texts, "g", "i h", "zzz a"]
    np.testing.assert_allclose(
        sm.transform(probe), _hand_reference(texts, labels, probe), rtol=1e-12
    )
    # a tail class's own words point to it
    q = sm.transform(["g", "i"])
    assert q[0].argmax() == 2 and q[1].argmax() == 3
    assert sm.keywords_["tail1"] and set(sm.keywords_["tail2"]) == {"h", "f", "i"}
