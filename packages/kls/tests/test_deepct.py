"""DeepCT term weights (query term recall targets, Trainer training, save/load) and the LE "deepct" prior."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest

from kls import DeepCTWeighter, LabelEnhancer, query_term_recall
from kls.errors import EmptyInputError, NotFittedError, UnknownIdError
from kls.weighting import BM25Weighter

QUERIES = {"q1": "apple pie", "q2": "Apple recipe", "q3": "engine oil"}
DOCS = {"d1": "apple pie recipe", "d2": "car engine", "d3": "nobody asks for me"}
QRELS = {"q1": {"d1"}, "q2": {"d1"}, "q3": {"d2"}}

KEY = [
    "apple",
    "river",
    "engine",
    "garden",
    "silver",
    "window",
    "planet",
    "coffee",
    "forest",
    "winter",
    "castle",
    "rocket",
]
FILL = [
    "table",
    "paper",
    "little",
    "number",
    "yellow",
    "market",
    "simple",
    "moment",
    "person",
    "bottle",
    "corner",
    "letter",
]


def planted(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Documents of 3 key + 5 filler words; each document's query is its 3 key words."""
    rng = random.Random(seed)
    queries, docs = [], []
    for _ in range(n):
        k, f = rng.sample(KEY, 3), rng.sample(FILL, 5)
        words = k + f
        rng.shuffle(words)
        docs.append(" ".join(words))
        queries.append(" ".join(k))
    return queries, docs


@pytest.fixture(scope="module")
def word_tok():
    from papercore.testing import build_encoder_tokenizer

    return build_encoder_tokenizer(vocab_size=512, extra_texts=[" ".join(KEY + FILL)] * 20)


def make_weighter(tok, seed: int = 0, **kw) -> DeepCTWeighter:
    from papercore.testing import tiny_encoder

    return DeepCTWeighter((tiny_encoder(tokenizer=tok, seed=seed), tok), max_length=32, **kw)


@pytest.fixture(scope="module")
def trained(word_tok):
    queries, docs = planted(32, seed=0)
    w = make_weighter(word_tok, batch_size=8)
    before = w.mse(queries, docs)
    w.fit(queries, docs, epochs=8, lr=1e-3, head_lr=1e-2)
    return w, before, w.mse(queries, docs)


def test_query_term_recall_by_hand():
    qtr = query_term_recall(QUERIES, DOCS, QRELS)
    # d1 has two relevant queries: "apple" in both, "pie" and "recipe" in one each
    assert qtr["d1"] == {"apple": 1.0, "pie": 0.5, "recipe": 0.5}
    # d2 has one relevant query "engine oil": engine 1/1, car 0/1 ("oil" is not in d2)
    assert qtr["d2"] == {"car": 0.0, "engine": 1.0}
    assert "d3" not in qtr  # no relevant query: not a training document
    # graded qrels (grade 0 = not relevant) and aligned sequences give the same targets
    graded = {"q1": {"d1": 1}, "q2": {"d1": 2}, "q3": {"d2": 1, "d3": 0}}
    assert query_term_recall(QUERIES, DOCS, graded) == qtr
    seq = query_term_recall(["apple pie", "apple recipe"], ["apple pie recipe"], {0: {0}, 1: {0}})
    assert seq == {"0": {"apple": 1.0, "pie": 0.5, "recipe": 0.5}}


def test_every_wordpiece_inherits_its_words_target(tiny_encoder_tokenizer):
    from papercore.testing import tiny_encoder

    tok = tiny_encoder_tokenizer
    w = DeepCTWeighter((tiny_encoder(tokenizer=tok), tok))
    qtr = query_term_recall(QUERIES, DOCS, QRELS)
    (rows,) = w.token_targets([DOCS["d1"]], [qtr["d1"]])
    pieces = {word: tok.tokenize(word) for word in ("apple", "pie", "recipe")}
    assert len(pieces["apple"]) > 1  # the word really is split, so inheritance is tested
    expected = [(p, qtr["d1"][word]) for word in ("apple", "pie", "recipe") for p in pieces[word]]
    assert rows == expected  # [CLS] / [SEP] are not in the targets (masked out of the loss)


def test_training_lowers_mse_and_weights_planted_query_words_higher(trained, word_tok):
    w, before, after = trained
    assert after < 0.25 * before
    assert w.losses_[-1] < w.losses_[0]
    _, test_docs = planted(8, seed=1)  # unseen documents
    ww = w.word_weights(test_docs)
    key = [v for d in ww for t, v in d.items() if t in KEY]
    filler = [v for d in ww for t, v in d.items() if t in FILL]
    assert len(key) == 24 and len(filler) == 40
    assert np.mean(key) > np.mean(filler) + 0.5
    assert min(key) > max(filler)
    toks = w.token_weights(test_docs[:1])[0]
    assert [t for t, _ in toks] == word_tok.tokenize(test_docs[0]) and all(v >= 0 for _, v in toks)


def test_save_load_round_trip_gives_identical_weights(trained, tmp_path):
    from transformers import AutoModelForTokenClassification

    w, _, _ = trained
    texts = planted(4, seed=2)[1]
    w.save_pretrained(tmp_path / "deepct")
    loaded = DeepCTWeighter.from_pretrained(tmp_path / "deepct")
    assert loaded.fitted_ and loaded.max_length == 32
    assert loaded.token_weights(texts) == w.token_weights(texts)
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "deepct")
    assert plain.config.num_labels == 1  # a plain HF directory
    with pytest.raises(NotFittedError, match="query side"):
        loaded.matrix(texts)  # corpus statistics are not saved: refit them
    loaded.fit_query_weights(texts)
    assert loaded.matrix(texts).shape == (4, len(loaded.vocabulary_))


def test_matrix_and_query_matrix_share_the_bm25_vocabulary(trained):
    w, _, _ = trained
    queries, docs = planted(4, seed=3)
    D, Q = w.matrix(docs), w.query_matrix(queries)
    assert D.shape[1] == Q.shape[1] == len(w.vocabulary_)
    for i, doc in enumerate(docs):
        ww = w.weights(doc)
        for word, j in w.vocabulary_.items():
            assert D[i, j] == pytest.approx(ww.get(word, 0.0))
    np.testing.assert_allclose(
        Q.toarray(), w.query_weighter.matrix(queries).toarray()
    )  # queries: BM25


def test_errors(word_tok, trained):
    w = make_weighter(word_tok)
    with pytest.raises(NotFittedError, match="call fit"):
        w.token_weights(["apple river"])
    with pytest.raises(UnknownIdError, match=r"query ids \['q9'\].*document ids \['d9'\]"):
        w.fit(QUERIES, DOCS, {"q9": {"d1"}, "q1": {"d9"}})
    with pytest.raises(EmptyInputError, match="document 'd2' is empty"):
        w.fit(QUERIES, {**DOCS, "d2": "  "}, QRELS)
    with pytest.raises(EmptyInputError, match="no query texts given"):
        w.fit([], [], None)
    with pytest.raises(ValueError, match="3 queries and 2 documents"):
        w.fit(["a b", "c d", "e f"], ["a b c", "c d e"])
    with pytest.raises(EmptyInputError, match="no relevant"):
        w.fit(QUERIES, DOCS, {"q1": set()})
    fitted, _, _ = trained
    with pytest.raises(EmptyInputError, match="text 1 is empty"):
        fitted.token_weights(["apple", ""])


def test_label_enhancer_with_deepct_prior_end_to_end(tmp_path):
    from papercore.testing import tiny_sentence_transformer

    corpus = {
        "d1": "the red apple grows on the old tree in the orchard",
        "d2": "a blue car drives down the long road at night",
        "d3": "fresh apple juice is made from red apples",
        "d4": "the train leaves the station every morning",
        "d5": "an orchard of pear trees near the river",
    }
    ds = datasets.Dataset.from_dict(
        {
            "anchor": ["red apple orchard", "car on the road", "morning train", "pear trees"],
            "positive": [corpus["d1"], corpus["d2"], corpus["d4"], corpus["d5"]],
            "negative_1": [corpus["d2"], corpus["d4"], corpus["d5"], corpus["d1"]],
            "negative_2": [corpus["d3"], corpus["d3"], corpus["d1"], corpus["d2"]],
        }
    )
    st = tiny_sentence_transformer(tmp_path / "st", extra_texts=list(corpus.values()))
    le = LabelEnhancer(
        st,
        weighter="deepct",
        alpha=0.6,
        batch_size=2,
        lr=1e-3,
        deepct_kwargs={"epochs": 2, "lr": 1e-3},
    ).fit(ds, corpus=corpus)
    assert isinstance(le.weighter, DeepCTWeighter) and le.weighter.fitted_
    assert le.weighter.n_train_docs_ == 4  # the four positives
    Y = np.asarray(le.to_dataset(ds)["label"])
    np.testing.assert_allclose(Y.sum(axis=1), 1.0, atol=1e-5)
    assert (Y >= 0).all() and (Y.argmax(axis=1) == 0).all()
    # the DeepCT model is its own copy: neither the retriever nor g share its weights
    enc = st[0].auto_model
    assert (
        le.weighter.model.base_model is not enc
        and le.weighter.model.base_model is not le.model.encoder
    )
    # "auto" below 1,000 pairs is the BM25 prior
    auto = LabelEnhancer(st, weighter="auto", batch_size=4, epochs=0).fit(ds, corpus=corpus)
    assert isinstance(auto.weighter, BM25Weighter)
    with pytest.raises(ValueError, match="'deepct', 'auto'"):
        LabelEnhancer(st, weighter="bogus")
