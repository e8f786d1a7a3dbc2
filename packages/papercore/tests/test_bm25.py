"""papercore.retrieval.bm25: BM25Index against hand-computed BM25, k clamping, zero scores,
custom tokenizers, errors, and identity with plain bm25s (what the callers used before)."""

from __future__ import annotations

import importlib.util
import logging
import math
import subprocess
import sys

import numpy as np
import pytest

from papercore.errors import BackendUnavailableError, MalformedInputError
from papercore.retrieval import BM25Index, make_synthetic_retrieval, stopword_list
from papercore.retrieval.bm25 import word_tokenize

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bm25s") is None,
    reason='needs bm25s: pip install "papercore[retrieval]"',
)

# no stop words in these texts; lengths 3, 2, 4 -> avgdl = 3
TOY = {
    "d1": "apple banana apple",
    "d2": "banana cherry",
    "d3": "cherry date elderberry fig",
}
TOY_TERMS = {d: t.split() for d, t in TOY.items()}


def hand_bm25(query: list[str], method: str, k1: float, b: float) -> dict[str, float]:
    """BM25 of ``query`` against TOY, written out from the formulas (Kamphuis et al. 2020)."""
    n = len(TOY_TERMS)
    avgdl = sum(len(t) for t in TOY_TERMS.values()) / n
    out = {}
    for d, terms in TOY_TERMS.items():
        score = 0.0
        for t in query:  # every query occurrence counts
            tf = terms.count(t)
            if tf == 0:
                continue
            df = sum(t in ts for ts in TOY_TERMS.values())
            norm = k1 * (1 - b + b * len(terms) / avgdl)
            if method == "lucene":
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf / (tf + norm)
            elif method == "robertson":
                idf = math.log(max(1.0, (n - df + 0.5) / (df + 0.5)))
                score += idf * tf / (tf + norm)
            elif method == "atire":
                idf = math.log(n / df)
                score += idf * tf * (k1 + 1) / (tf + norm)
        out[d] = score
    return out


def toy_index(**kw) -> BM25Index:
    kw.setdefault("keep_zero_scores", False)
    index = BM25Index(**kw)
    index.index(TOY)
    return index


# --------------------------------------------------------------------------- the formula
@pytest.mark.parametrize("k1", [0.0, 0.5, 1.2, 2.0])
@pytest.mark.parametrize("b", [0.0, 0.5, 0.75, 1.0])
def test_lucene_scores_equal_the_hand_computation(k1, b):
    index = toy_index(k1=k1, b=b)
    for query in (["apple"], ["banana", "cherry"], ["apple", "apple", "fig"], ["cherry", "date"]):
        expected = hand_bm25(query, "lucene", k1, b)
        got = index.scores(" ".join(query))
        np.testing.assert_allclose(got, [expected[d] for d in TOY], rtol=1e-6, atol=1e-7)
        run = index.search({"q": " ".join(query)}, k=3)["q"]
        positive = {d: s for d, s in expected.items() if s > 0}
        assert set(run) == set(positive)
        for d, s in run.items():
            assert s == pytest.approx(positive[d], rel=1e-6)
        assert list(run.values()) == sorted(run.values(), reverse=True)  # best first


def test_the_default_is_lucene_with_k1_1_2_and_b_0_75():
    index = BM25Index()
    assert (index.k1, index.b, index.method, index.keep_zero_scores) == (1.2, 0.75, "lucene", False)
    index.index(TOY)
    expected = hand_bm25(["banana", "cherry"], "lucene", 1.2, 0.75)
    np.testing.assert_allclose(index.scores("banana cherry"), [expected[d] for d in TOY], rtol=1e-6)


@pytest.mark.parametrize("method", ["robertson", "atire"])
def test_other_variants_equal_their_hand_computation(method):
    index = toy_index(k1=1.2, b=0.75, method=method)
    for query in (["apple"], ["banana", "cherry", "fig"]):
        expected = hand_bm25(query, method, 1.2, 0.75)
        got = index.scores(" ".join(query))
        np.testing.assert_allclose(got, [expected[d] for d in TOY], rtol=1e-6, atol=1e-7)


def test_stop_words_and_case_do_not_count():
    index = toy_index(k1=1.2, b=0.75)
    np.testing.assert_allclose(
        index.scores("The APPLE, of a banana!"), index.scores("apple banana")
    )
    assert index.tokenize("The APPLE, of a banana! x") == ["apple", "banana"]  # "x": 1 letter


def test_default_tokenizer_is_bm25s_tokenize():
    import bm25s

    texts = ["The Quick-brown fox's 2 jumps, über 42 lazy dogs!", "a I it's 3.14 naïve café"]
    got = [BM25Index().tokenize(t) for t in texts]
    want = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    assert got == [list(w) for w in want]
    assert word_tokenize("Ab c DE") == ["ab", "de"]


def test_identical_to_plain_bm25s_on_the_synthetic_collection():
    """What quadbert, kls and the bench did before with bm25s directly: same ids, same scores, same order."""
    import bm25s

    data = make_synthetic_retrieval(seed=1)
    ids, qids = list(data.corpus), list(data.test.queries)
    bm = bm25s.BM25(k1=1.5, b=0.75)
    bm.index(
        bm25s.tokenize([data.corpus[i] for i in ids], stopwords="en", show_progress=False),
        show_progress=False,
    )
    docs, scores = bm.retrieve(
        bm25s.tokenize([data.test.queries[q] for q in qids], stopwords="en", show_progress=False),
        k=60,
        show_progress=False,
    )
    index = BM25Index(k1=1.5, keep_zero_scores=True)
    index.index(data.corpus)
    run = index.search(data.test.queries, k=60)
    for i, q in enumerate(qids):
        assert list(run[q]) == [ids[j] for j in docs[i]]
        assert list(run[q].values()) == [float(s) for s in scores[i]]


# --------------------------------------------------------------------------- k and zero scores
def test_k_larger_than_the_corpus_is_clamped():
    keep = toy_index(keep_zero_scores=True)
    run = keep.search({"q": "banana", "r": "date fig"}, k=100)
    assert [len(hits) for hits in run.values()] == [3, 3]
    positions, scores = keep.search_arrays({"q": "banana"}, k=100)
    assert positions.shape == scores.shape == (1, 3)
    assert sorted(positions[0].tolist()) == [0, 1, 2]
    assert scores.dtype == np.float32 and list(scores[0]) == sorted(scores[0], reverse=True)


def test_zero_score_hits_dropped_by_default_and_kept_on_request():
    query = {"q": "apple"}  # only d1 has "apple"
    dropped = toy_index().search(query, k=3)["q"]
    assert list(dropped) == ["d1"] and dropped["d1"] > 0
    kept = toy_index(keep_zero_scores=True).search(query, k=3)["q"]
    assert next(iter(kept)) == "d1" and set(kept) == {"d1", "d2", "d3"}
    assert kept["d2"] == kept["d3"] == 0.0
    assert kept["d1"] == dropped["d1"]
    # k below the number of matches: both give the same top-k
    both = [
        toy_index(keep_zero_scores=z).search({"q": "banana cherry"}, k=2)["q"]
        for z in (False, True)
    ]
    assert both[0] == both[1] and len(both[0]) == 2


def test_query_without_any_indexed_term_warns_and_ranks_nothing(caplog):
    index = toy_index()
    with caplog.at_level(logging.WARNING, logger="papercore.retrieval.bm25"):
        run = index.search({"stop": "the of and", "oov": "zebra", "ok": "fig"}, k=3)
    assert run["stop"] == {} and run["oov"] == {} and list(run["ok"]) == ["d3"]
    assert "1 of 3 queries have no term after stop-word removal" in caplog.text
    assert not index.scores("zebra").any()
    kept = toy_index(keep_zero_scores=True).search({"stop": "the of and"}, k=2)["stop"]
    assert list(kept.values()) == [0.0, 0.0]


def test_reindexing_replaces_the_corpus():
    index = toy_index()
    index.index({"x": "zebra stripes", "y": "horse"})
    assert index.ids == ["x", "y"] and index.ntotal == len(index) == 2
    run = index.search({"q": "zebra apple"}, k=5)  # "apple" is gone with the old corpus
    # N = 2, df("zebra") = 1, |x| = 2, avgdl = 1.5
    expected = math.log(2) / (1 + 1.2 * (0.25 + 0.75 * 2 / 1.5))
    assert run == {"q": {"x": pytest.approx(expected, rel=1e-6)}}
    assert index.search({}, k=5) == {}


# --------------------------------------------------------------------------- tokenizers
def segment(text: str) -> list[str]:
    """A toy Chinese word segmenter: a fixed dictionary, longest match first, else one character."""
    words = ("苹果", "香蕉", "好吃", "水果", "我们")
    out, i = [], 0
    while i < len(text):
        w = next((w for w in words if text.startswith(w, i)), text[i])
        if w.strip():
            out.append(w)
        i += len(w)
    return out


ZH = {"a": "苹果好吃", "b": "香蕉是水果", "c": "我们吃苹果和香蕉"}


def test_custom_tokenizer_for_chinese():
    # the default pattern takes a whole run of CJK characters as one word: "苹果" matches nothing
    default = BM25Index(stopwords=None, keep_zero_scores=False)
    default.index(ZH)
    assert default.search({"q": "苹果"}, k=3) == {"q": {}}
    index = BM25Index(tokenizer=segment, stopwords=["是", "和", "吃"], keep_zero_scores=False)
    index.index(ZH)
    assert index.tokenize("我们吃苹果和香蕉") == ["我们", "苹果", "香蕉"]
    run = index.search({"q": "苹果"}, k=3)["q"]
    assert set(run) == {"a", "c"}
    # same numbers as the hand formula on the segmented texts (lengths 2, 2, 3 after stop words)
    n, avgdl, df = 3, 7 / 3, 2
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    for d, dl in (("a", 2), ("c", 3)):
        assert run[d] == pytest.approx(idf / (1 + 1.2 * (0.25 + 0.75 * dl / avgdl)), rel=1e-6)


def test_tokenizer_object_with_a_tokenize_method_and_named_stop_words():
    class Upper:
        def tokenize(self, text: str) -> list[str]:
            return text.upper().split()

    index = BM25Index(tokenizer=Upper(), stopwords=None, keep_zero_scores=False)
    index.index(TOY)
    assert list(index.search({"q": "apple"}, k=3)["q"]) == ["d1"]
    assert "the" in stopword_list("en") and "的" in stopword_list("zh")
    assert stopword_list(None) == frozenset() and stopword_list(["x"]) == {"x"}


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"k1": -0.1}, r"k1 must be a finite number >= 0, got -0.1"),
        ({"k1": "1.2"}, r"k1 must be a number, got str"),
        ({"b": 1.5}, r"b must be in \[0, 1\], got 1.5"),
        (
            {"method": "bm25+"},
            r"method must be one of \('lucene', 'robertson', 'atire'\), got 'bm25\+'",
        ),
        ({"stopwords": "klingon"}, r"unknown stop-word list 'klingon'"),
        ({"tokenizer": 42}, r"tokenizer must be None, a callable .* got int"),
        ({"keep_zero_scores": "yes"}, r"keep_zero_scores must be True or False, got 'yes'"),
    ],
)
def test_bad_settings_raise(kwargs, msg):
    with pytest.raises(MalformedInputError, match=msg):
        BM25Index(**kwargs)


def test_bad_corpus_raises():
    index = BM25Index()
    with pytest.raises(MalformedInputError, match="corpus is empty"):
        index.index({})
    with pytest.raises(MalformedInputError, match=r"corpus: 2 empty text\(s\), ids \['b', 'c'\]"):
        index.index({"a": "apple", "b": "  ", "c": ""})
    with pytest.raises(MalformedInputError, match="corpus must be a dict id -> text, got list"):
        index.index(["apple"])
    with pytest.raises(MalformedInputError, match="none of the 2 documents has a term left"):
        index.index({"a": "the of", "b": "and a"})
    bad = BM25Index(tokenizer=lambda t: t)  # returns a str, not a list
    with pytest.raises(
        MalformedInputError, match="tokenizer must return a list of strings, got str"
    ):
        bad.index(TOY)


def test_bad_search_raises():
    with pytest.raises(RuntimeError, match=r"call index\(corpus\) before searching"):
        BM25Index().search({"q": "apple"})
    index = toy_index()
    with pytest.raises(MalformedInputError, match=r"queries: 1 empty text\(s\), ids \['q2'\]"):
        index.search({"q1": "apple", "q2": " "})
    with pytest.raises(MalformedInputError, match="query must be a non-blank string"):
        index.scores("")
    for k in (0, -1, 2.5, "3", True):
        with pytest.raises(MalformedInputError, match="k must be an integer >= 1"):
            index.search({"q": "apple"}, k=k)
    with pytest.raises(MalformedInputError, match="queries must be a dict id -> text, got list"):
        index.search(["apple"])


def test_missing_bm25s_raises_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm25s", None)  # makes `import bm25s` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r'pip install "papercore\[retrieval\]"'):
        BM25Index(stopwords=None).index(TOY)


def test_importing_papercore_retrieval_does_not_import_bm25s():
    code = "import sys, papercore.retrieval; print('bm25s' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
