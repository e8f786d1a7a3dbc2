"""Retrieval soft labels (KLS §2.3, LE §2.4 and its baselines) and SoftLabelRankingLoss."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pytest
import torch

from kls import (
    KNNSmoothingEnhancer,
    LabelEnhancer,
    LabelPropagationEnhancer,
    RetrievalKeywordSmoother,
    SoftLabelRankingLoss,
)
from kls.errors import InvalidGroupError, InvalidSoftLabelError, OutOfRangeError

CORPUS = {
    "d1": "the red apple grows on the old tree in the orchard",
    "d2": "a blue car drives down the long road at night",
    "d3": "fresh apple juice is made from red apples",
    "d4": "the train leaves the station every morning",
    "d5": "an orchard of pear trees near the river",
}


def group_ds(n: int = 4) -> datasets.Dataset:
    rows = {
        "anchor": ["red apple orchard", "car on the road", "morning train", "pear trees river"][:n],
        "positive": [CORPUS["d1"], CORPUS["d2"], CORPUS["d4"], CORPUS["d5"]][:n],
        "negative_1": [CORPUS["d2"], CORPUS["d4"], CORPUS["d5"], CORPUS["d1"]][:n],
        "negative_2": [CORPUS["d3"], CORPUS["d3"], CORPUS["d1"], CORPUS["d2"]][:n],
    }
    return datasets.Dataset.from_dict(rows)


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    from papercore.testing import tiny_sentence_transformer

    return tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


def test_document_sharing_query_words_gets_more_mass():
    sm = RetrievalKeywordSmoother(alpha=0.2).fit(CORPUS)
    y = sm.soft_labels("red apple juice", [CORPUS["d1"], CORPUS["d2"], CORPUS["d3"]])
    assert y.sum() == pytest.approx(1.0)
    assert y[0] >= 0.8 and y[2] > y[1]


def test_retrieval_alpha_zero_is_one_hot_and_rows_sum_to_one():
    ds = RetrievalKeywordSmoother(alpha=0.0).fit(CORPUS).to_dataset(group_ds())
    assert ds["label"] == [[1.0, 0.0, 0.0]] * 4
    ds = RetrievalKeywordSmoother(alpha=0.3).fit(CORPUS).to_dataset(group_ds())
    Y = np.asarray(ds["label"])
    np.testing.assert_allclose(Y.sum(axis=1), 1.0, atol=1e-6)
    assert (Y[:, 0] >= 0.7 - 1e-6).all()


def test_groups_with_bad_shape_raise_with_row_index():
    sm = RetrievalKeywordSmoother().fit(CORPUS)
    ds = group_ds().to_dict()
    ds["negative_2"][2] = ds["positive"][2]
    with pytest.raises(InvalidGroupError, match="row 2: the positive also appears"):
        sm.to_dataset(datasets.Dataset.from_dict(ds))
    ds = group_ds().to_dict()
    ds["positive"][1] = ""
    with pytest.raises(InvalidGroupError, match="row 1: the group has no positive"):
        sm.to_dataset(datasets.Dataset.from_dict(ds))
    with pytest.raises(InvalidGroupError, match="no negative columns"):
        sm.to_dataset(group_ds().remove_columns(["negative_1", "negative_2"]))
    with pytest.raises(OutOfRangeError):
        RetrievalKeywordSmoother(alpha=1.2)
    with pytest.raises(OutOfRangeError):
        RetrievalKeywordSmoother(tau=0)


def test_label_propagation_and_knn_baselines(tiny_st):
    ds = group_ds()
    for enh in (LabelPropagationEnhancer(tiny_st), KNNSmoothingEnhancer(tiny_st)):
        Y = np.asarray(enh.fit(ds).to_dataset(ds)["label"])
        np.testing.assert_allclose(Y.sum(axis=1), 1.0, atol=1e-6)
        assert (Y.argmax(axis=1) == 0).all() and (Y[:, 0] >= 0.8 - 1e-6).all()
    # kNN smoothing: a negative identical in meaning to d+ gets the most mass
    knn = KNNSmoothingEnhancer(tiny_st, alpha=0.5, tau=0.05)
    y = knn.label_distribution("q", ["a b c d", "e f g h", "a b c d ."])
    assert y[2] > y[1]


def test_label_enhancer_trains_and_gives_distributions(tiny_st):
    ds = group_ds()
    le = LabelEnhancer(tiny_st, alpha=0.6, tau=0.1, batch_size=2, lr=1e-3, epochs=1)
    le.fit(ds, corpus=CORPUS)
    assert len(le.losses_) == 2 and all(math.isfinite(v) for v in le.losses_)
    Y = np.asarray(le.to_dataset(ds)["label"])
    np.testing.assert_allclose(Y.sum(axis=1), 1.0, atol=1e-5)
    assert (Y.argmax(axis=1) == 0).all()  # keep_gold_top, even at α = 0.6
    # the retriever itself is untouched (g is a copy)
    assert le.model.encoder is not tiny_st[0].auto_model


def test_label_enhancer_trains_under_trainer_and_resumes_exactly(tiny_st, tmp_path):
    ds = group_ds()
    kw = dict(alpha=0.6, tau=0.1, batch_size=2, lr=1e-3, epochs=2, seed=3)
    full = LabelEnhancer(tiny_st, **kw).fit(
        ds, corpus=CORPUS, output_dir=str(tmp_path / "run"), save_strategy="steps", save_steps=1
    )
    assert len(full.losses_) == 4  # 2 epochs x 2 steps, logged by the Trainer
    assert (tmp_path / "run" / "checkpoint-2").is_dir()  # checkpoints of g
    # the Trainer's schedule ran: linear decay to 0 over the 4 steps (the bare loop had none)
    resumed = LabelEnhancer(tiny_st, **kw).fit(
        ds,
        corpus=CORPUS,
        output_dir=str(tmp_path / "run2"),
        resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"),
    )
    for (n, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), n
    np.testing.assert_allclose(
        np.asarray(resumed.to_dataset(ds)["label"]),
        np.asarray(full.to_dataset(ds)["label"]),
        atol=1e-6,
    )
    # a run stopped after 1 epoch is not the same model: the check above can fail
    half = LabelEnhancer(tiny_st, **{**kw, "epochs": 1}).fit(ds, corpus=CORPUS)
    assert not torch.allclose(half.model.u.weight, full.model.u.weight)
    # extra TrainingArguments pass through; bad ones fail like TrainingArguments does
    clipped = LabelEnhancer(tiny_st, **kw).fit(ds, corpus=CORPUS, max_grad_norm=1e-6)
    assert not torch.allclose(clipped.model.u.weight, full.model.u.weight)


def _features(model, texts_per_col):
    return [model.tokenize(col) for col in texts_per_col]


def test_lambda_zero_equals_mnrl_value_and_gradients(tiny_st):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    ds = group_ds()
    cols = [ds["anchor"], ds["positive"], ds["negative_1"], ds["negative_2"]]
    labels = torch.tensor(RetrievalKeywordSmoother().fit(CORPUS).to_dataset(ds)["label"])
    ours = SoftLabelRankingLoss(tiny_st, lam=0.0)
    ref = MultipleNegativesRankingLoss(tiny_st)
    tiny_st.eval()
    a = ours(_features(tiny_st, cols), labels)
    ga = torch.autograd.grad(a, list(tiny_st.parameters()), allow_unused=True)
    b = ref(_features(tiny_st, cols), labels)
    gb = torch.autograd.grad(b, list(tiny_st.parameters()), allow_unused=True)
    assert torch.equal(a, b)
    for x, y in zip(ga, gb, strict=True):
        assert (x is None and y is None) or torch.equal(x, y)
    # with λ > 0 the KL term is added
    c = SoftLabelRankingLoss(tiny_st, lam=1.0)(_features(tiny_st, cols), labels)
    assert c.item() > a.item()


def test_bad_label_width_raises(tiny_st):
    ds = group_ds()
    cols = [ds["anchor"], ds["positive"], ds["negative_1"], ds["negative_2"]]
    with pytest.raises(InvalidSoftLabelError, match="3 floats per row"):
        SoftLabelRankingLoss(tiny_st)(_features(tiny_st, cols), torch.ones(4, 2) / 2)
    with pytest.raises(InvalidSoftLabelError, match="row 1 of the batch"):
        bad = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.2, 0.2], [1.0, 0, 0], [1.0, 0, 0]])
        SoftLabelRankingLoss(tiny_st)(_features(tiny_st, cols), bad)
    with pytest.raises(InvalidSoftLabelError, match="row 0 of the batch"):
        bad = torch.tensor([[math.nan, 0.5, 0.5]] + [[1.0, 0.0, 0.0]] * 3)
        SoftLabelRankingLoss(tiny_st)(_features(tiny_st, cols), bad)
    with pytest.raises(OutOfRangeError):
        SoftLabelRankingLoss(tiny_st, lam=-1)


def test_soft_label_ranking_loss_in_sentence_transformer_trainer(tmp_path):
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from papercore.testing import tiny_sentence_transformer

    ds = RetrievalKeywordSmoother().fit(CORPUS).to_dataset(group_ds())
    finals = {}
    for name in ("soft0", "mnrl", "soft1"):
        model = tiny_sentence_transformer(tmp_path / "st")
        if name == "mnrl":
            loss = MultipleNegativesRankingLoss(model)
        else:
            loss = SoftLabelRankingLoss(model, lam=0.0 if name == "soft0" else 1.0)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path / name),
            per_device_train_batch_size=2,
            max_steps=2,
            learning_rate=1e-3,
            report_to=[],
            use_cpu=True,
            seed=0,
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1,
        )
        tr = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss)
        out = tr.train()
        assert math.isfinite(out.training_loss)
        finals[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for k in finals["mnrl"]:
        assert torch.allclose(finals["soft0"][k], finals["mnrl"][k], atol=1e-6), k
    assert any(not torch.allclose(finals["soft1"][k], finals["mnrl"][k]) for k in finals["mnrl"])
