"""DeepCT term weights (query term recall targets, Trainer training, save/load) and the LE "deepct" prior."""

from __future__ import annotations

import random
import re

import datasets
import numpy as np
import pytest

from kls import DeepCTWeighter, LabelEnhancer, query_term_recall
from kls.deepct import SIDECAR
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


WS_WORDS = ["apple", "pie", "recipe", "car", "engine"]


def whitespace_tokenizer(**special: str):
    """A lower-casing WordPiece tokenizer whose pre-tokenizer only splits on whitespace (like
    SentencePiece / byte-level BPE: "pie," is one pre-tokenised word), ``[CLS] … [SEP]``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "</s>", *WS_WORDS, "##,", "##."]
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


@pytest.fixture(scope="module")
def ws_tok():
    return whitespace_tokenizer(
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


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


def test_words_are_word_runs_whatever_the_pre_tokenizer(ws_tok):
    from papercore.testing import tiny_encoder

    text = "Apple pie, recipe."
    assert ws_tok.tokenize(text) == ["apple", "pie", "##,", "recipe", "##."]  # "pie," one word
    w = DeepCTWeighter((tiny_encoder(tokenizer=ws_tok, hidden_size=32), ws_tok), max_length=16)
    (rows,) = w.token_targets([text], [{"apple": 1.0, "pie": 0.5, "recipe": 0.25}])
    # "pie" gets the target of the word "pie"; the punctuation pieces belong to no word: masked
    assert rows == [("apple", 1.0), ("pie", 0.5), ("recipe", 0.25)]
    w.fitted_ = True  # (untrained head: only the words are checked)
    assert set(w.weights(text)) == {"apple", "pie", "recipe"}
    assert [t for t, _ in w.token_weights([text])[0]] == ["apple", "pie", "recipe"]
    # the LE token prior maps "pie," to the BM25 weight of "pie" as well
    le = LabelEnhancer((tiny_encoder(tokenizer=ws_tok, hidden_size=32), ws_tok), max_length=16)
    le.weighter = BM25Weighter().fit([text, "car engine", "engine pie"])
    enc = ws_tok([text], padding=True, return_offsets_mapping=True, return_tensors="pt")
    prior = le._prior([text], enc, "doc")[0].tolist()
    bm25 = le.weighter.weights(text)
    assert bm25["pie"] > 0
    assert prior == pytest.approx([0.0, bm25["apple"], bm25["pie"], 0.0, bm25["recipe"], 0.0, 0.0])


def test_word_spans_follow_a_weighters_own_tokenizer(ws_tok):
    from kls.deepct import word_spans
    from papercore.testing import tiny_encoder

    def seg(text):  # a word segmenter whose words are not \w+ runs (as jieba for Chinese)
        return ["apple", "pie", "recipe"] if text.startswith("Applepie") else text.lower().split()

    text = "Applepie recipe"
    assert [w for *_, w in word_spans(text)] == ["applepie", "recipe"]
    assert word_spans(text, seg) == [(0, 5, "apple"), (5, 8, "pie"), (9, 15, "recipe")]
    assert word_spans("a b", lambda t: ["zzz", "b"]) == [(2, 3, "b")]  # not in the text: left out
    le = LabelEnhancer((tiny_encoder(tokenizer=ws_tok, hidden_size=32), ws_tok), max_length=16)
    le.weighter = BM25Weighter(tokenizer=seg, stopwords=None).fit(
        [text, "car engine", "engine pie"]
    )
    enc = ws_tok([text], padding=True, return_offsets_mapping=True, return_tensors="pt")
    assert ws_tok.convert_ids_to_tokens(enc["input_ids"][0]) == [
        "[CLS]",
        "[UNK]",
        "recipe",
        "[SEP]",
    ]
    prior = le._prior([text], enc, "doc")[0].tolist()
    bm25 = le.weighter.weights(text)
    # the one wordpiece of "applepie" overlaps the segmenter's "apple" first: it inherits its weight
    assert prior == pytest.approx([0.0, bm25["apple"], bm25["recipe"], 0.0])
    assert bm25["apple"] > 0


def test_repeated_word_occurrences_are_maxed_not_merged(trained):
    w, _, _ = trained
    text = "apple apple river table"  # the same word twice in a row: two occurrences
    apples = [v for t, v in w.token_weights([text])[0] if t == "apple"]
    assert len(apples) == 2 and abs(apples[0] - apples[1]) > 1e-6
    assert w.weights(text)["apple"] == pytest.approx(max(apples), abs=1e-7)


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
    # queries: plain BM25 fitted on the training documents and queries (fit's default corpus)
    train_q, train_d = planted(32, seed=0)
    bm25 = BM25Weighter().fit(list(dict.fromkeys(train_d)) + train_q)
    assert w.vocabulary_ == bm25.vocabulary_
    np.testing.assert_allclose(Q.toarray(), bm25.matrix(queries).toarray())
    assert not np.allclose(w.matrix(queries).toarray(), Q.toarray())  # DeepCT ≠ BM25 on them


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


@pytest.fixture(scope="module")
def le_data(tmp_path_factory):
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
    st = tiny_sentence_transformer(
        tmp_path_factory.mktemp("le") / "st", extra_texts=list(corpus.values())
    )
    return st, corpus, ds


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def storage(model) -> set[int]:
    return {p.data_ptr() for p in model.parameters()}


def test_label_enhancer_with_deepct_prior_end_to_end(le_data):
    st, corpus, ds = le_data
    checkpoint = state(st[0].auto_model)
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
    # the DeepCT weights reach g's pooling prior: every word token gets its word's DeepCT
    # weight in a document, and its plain BM25 weight in a query
    docs, queries = [corpus["d1"], corpus["d3"]], list(ds["anchor"][:2])
    bm25 = BM25Weighter().fit(list(corpus.values()) + list(ds["anchor"]))
    for texts, kind, expected in (
        (docs, "doc", le.weighter.word_weights(docs)),
        (queries, "query", [bm25.weights(q) for q in queries]),
    ):
        enc = le.tokenizer(texts, padding=True, return_offsets_mapping=True, return_tensors="pt")
        prior = le._prior(texts, enc, kind)
        for b, (text, ww) in enumerate(zip(texts, expected, strict=True)):
            words = [w if w in bm25.vocabulary_ else None for w in text.lower().split()]
            wids = le.tokenizer(text).word_ids()  # no punctuation: its words are the same
            want = [0.0 if i is None or words[i] is None else ww[words[i]] for i in wids]
            assert prior[b, : len(want)].tolist() == pytest.approx(want, rel=1e-6)
            assert sum(v > 0 for v in want) >= 2 and prior[b, len(want) :].abs().sum() == 0
    assert max(le.weighter.weights(docs[0]).values()) > 0
    assert le.weighter.weights(docs[0]) != pytest.approx(bm25.weights(docs[0]))
    # the retriever is untouched, and the DeepCT model shares no storage with it or with g
    for k, v in checkpoint.items():
        assert st[0].auto_model.state_dict()[k].equal(v), k
    assert not storage(le.weighter.model) & (storage(st) | storage(le.model))
    with pytest.raises(ValueError, match="'deepct', 'auto'"):
        LabelEnhancer(st, weighter="bogus")


def test_label_enhancer_resolves_the_weighter_at_every_fit(le_data, monkeypatch):
    import kls.enhancement as enhancement

    st, corpus, ds = le_data
    checkpoint = state(st[0].auto_model)
    monkeypatch.setattr(enhancement, "AUTO_DEEPCT_MIN_PAIRS", 3)
    le = LabelEnhancer(
        st, weighter="auto", epochs=0, batch_size=2, max_length=24, deepct_kwargs={"lr": 1e-3}
    )
    le.fit(ds, corpus=corpus)  # 4 pairs >= 3: DeepCT
    first = le.weighter
    assert isinstance(first, DeepCTWeighter) and first.n_train_docs_ == 4
    assert first.max_length == 24  # LabelEnhancer(max_length=) reaches the DeepCT weighter
    # g (not trained: epochs=0) still holds the checkpoint's weights after DeepCT's training,
    # which did change its own copy
    for k, v in checkpoint.items():
        assert le.model.encoder.state_dict()[k].equal(v), k
    deepct = first.model.base_model.state_dict()
    assert {k for k in checkpoint if not k.startswith("pooler.")} <= deepct.keys()
    assert any(k in deepct and not deepct[k].equal(v) for k, v in checkpoint.items())
    le.fit(ds.select(range(3)), corpus=corpus)  # other data, exactly at the threshold
    assert le.weighter is not first and isinstance(le.weighter, DeepCTWeighter)
    assert le.weighter.n_train_docs_ == 3  # a DeepCT trained on the new pairs
    le.fit(ds.select(range(2)), corpus=corpus)  # below the threshold: "auto" decides again
    assert isinstance(le.weighter, BM25Weighter)


def test_label_enhancer_reuses_a_fitted_deepct_as_given(trained, le_data, tmp_path):
    st, corpus, ds = le_data
    fitted = DeepCTWeighter.from_pretrained(trained[0].save_pretrained(tmp_path / "deepct"))
    weights = state(fitted.model)
    le = LabelEnhancer(st, weighter=fitted, epochs=0, batch_size=2)
    for rows in (ds, ds.select(range(2))):
        le.fit(rows, corpus=corpus)
        assert le.weighter is fitted and not hasattr(fitted, "losses_")  # not retrained
    assert all(fitted.model.state_dict()[k].equal(v) for k, v in weights.items())
    # only its BM25 query side is refitted, on the corpus and the (last) training queries
    expected = BM25Weighter().fit(list(corpus.values()) + list(ds["anchor"][:2]))
    assert fitted.vocabulary_ == expected.vocabulary_


def test_auto_below_the_threshold_is_bm25(le_data):
    st, corpus, ds = le_data
    auto = LabelEnhancer(st, weighter="auto", batch_size=4, epochs=0).fit(ds, corpus=corpus)
    assert isinstance(auto.weighter, BM25Weighter)  # 4 pairs < 1,000


def test_fit_leaves_the_callers_random_states_alone(word_tok):
    import torch

    w = make_weighter(word_tok)
    queries, docs = planted(4, seed=5)

    def reseed():
        random.seed(123)
        np.random.seed(123)
        torch.manual_seed(123)

    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    reseed()
    expected = draw()
    reseed()
    w.fit(queries, docs, epochs=1, seed=7)  # Trainer seeds everything with 7 inside
    assert draw() == expected


def test_deepct_model_is_float32_whatever_the_config_says(word_tok, tmp_path):
    import torch

    from papercore.testing import save_model_dir, tiny_encoder

    enc = tiny_encoder(tokenizer=word_tok, hidden_size=32)
    enc.config.dtype = torch.float16  # the config names float16 (weights are float32)
    w = DeepCTWeighter((enc, word_tok), max_length=16)
    assert {p.dtype for p in w.model.parameters()} == {torch.float32}
    save_model_dir(enc.half(), word_tok, tmp_path / "fp16")  # a checkpoint stored in float16
    w = DeepCTWeighter(tmp_path / "fp16", max_length=16)
    assert {p.dtype for p in w.model.parameters()} == {torch.float32}


def test_head_and_encoder_learning_rates(word_tok):
    queries, docs = planted(8, seed=6)

    def largest_change(head_lr):  # 2 steps; Adam moves a weight by about lr per step
        w = make_weighter(word_tok, batch_size=4)
        before = state(w.model)
        w.fit(queries, docs, epochs=1, lr=1e-7, head_lr=head_lr)
        d = {k: float((v - before[k]).abs().max()) for k, v in w.model.state_dict().items()}
        head = max(v for k, v in d.items() if k.startswith("classifier."))
        return head, max(v for k, v in d.items() if not k.startswith("classifier."))

    head, encoder = largest_change(1e-2)
    assert head > 1e-3 and encoder < 1e-5
    head, encoder = largest_change(None)  # the head at the encoder's lr
    assert head < 1e-5 and encoder < 1e-5


def test_fit_refuses_a_gpu_that_trainer_would_not_use(word_tok):
    import torch

    w = make_weighter(word_tok)
    w.device = torch.device("cuda", 1)  # as if built with device="cuda:1"
    with pytest.raises(ValueError, match=r"CUDA_VISIBLE_DEVICES=1.*device=.cuda."):
        w.fit(*planted(2, seed=0))


def test_clear_errors_for_unusable_models(word_tok, tmp_path):
    import torch
    from transformers import BertConfig, BertForTokenClassification, CLIPTextConfig, CLIPTextModel

    from papercore.errors import ModelNotAvailableError
    from papercore.testing import save_model_dir

    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(ModelNotAvailableError, match=re.escape(str(missing))):
        DeepCTWeighter(missing)
    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    ner = BertForTokenClassification(BertConfig(vocab_size=len(word_tok), num_labels=3, **small))
    path = save_model_dir(ner, word_tok, tmp_path / "ner")
    with pytest.raises(ValueError, match="token-classification model with 3 labels"):
        DeepCTWeighter(path)
    with pytest.raises(ValueError, match="with 3 labels"):
        DeepCTWeighter((ner, word_tok))
    clip = CLIPTextModel(
        CLIPTextConfig(vocab_size=len(word_tok), bos_token_id=2, eos_token_id=3, **small)
    )
    with pytest.raises(
        TypeError, match="no \\*ForTokenClassification model for model type 'clip_text_model'"
    ):
        DeepCTWeighter((clip, word_tok))


def test_a_tokenizer_without_pad_token_pads_with_eos_or_unk():
    from papercore.testing import tiny_encoder

    for special, pad in (({"eos_token": "</s>"}, "</s>"), ({"unk_token": "[UNK]"}, "[UNK]")):
        tok = whitespace_tokenizer(**special)
        w = DeepCTWeighter((tiny_encoder(tokenizer=tok, hidden_size=32), tok), max_length=16)
        assert w.tokenizer.pad_token == pad and tok.pad_token is None  # the caller's is unchanged
        assert w.mse(["apple pie", "car"], ["apple pie recipe", "car engine"]) >= 0  # pads a batch
    tok = whitespace_tokenizer()
    with pytest.raises(ValueError, match="no pad token, and no eos or unk token"):
        DeepCTWeighter((tiny_encoder(tokenizer=tok, hidden_size=32), tok))


def test_from_pretrained_needs_the_sidecar(trained, tmp_path):
    w, _, _ = trained
    path = w.save_pretrained(tmp_path / "deepct")
    (path / SIDECAR).unlink()
    with pytest.raises(FileNotFoundError, match=f"not a saved DeepCTWeighter \\(no {SIDECAR}\\)"):
        DeepCTWeighter.from_pretrained(path)
    plain = DeepCTWeighter(path)  # still loadable as a model: the trained head, not marked fitted
    assert not plain.fitted_
    assert all(plain.model.state_dict()[k].equal(v) for k, v in w.model.state_dict().items())
    with pytest.raises(NotFittedError):
        plain.token_weights(["apple river"])
