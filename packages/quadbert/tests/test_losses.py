"""QuadrupletLoss: hand-computed values, the TripletLoss equivalence, gradients and bad inputs."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import (
    TripletDistanceMetric,
    TripletLoss,
)

from quadbert import QuadrupletLoss
from quadbert.errors import LossConfigError

# 2-D unit vectors: q = (1,0), p = (0.6,0.8), h = (0,1), s = (−1,0)
#   euclidean: d(q,p) = √0.8, d(q,h) = √2, d(h,s) = √2, d(q,s) = 2
#   cosine:    d(q,p) = 0.4,  d(q,h) = 1,  d(h,s) = 1,  d(q,s) = 2
Q, P, H, S = (torch.tensor([v]) for v in ([1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]))
D_QP, D_QH, D_HS, D_QS = math.sqrt(0.8), math.sqrt(2.0), math.sqrt(2.0), 2.0

TEXTS = [
    ["which comet has the longest tail", "who wrote the river poem"],
    ["the comet halley shows a long bright tail", "the river poem was written by a monk"],
    ["a telescope mirror for comet hunting", "the river flows into the sea"],
    ["bake the bread for twenty minutes", "the football match ended in a draw"],
]


def loss_of(emb, **kw):
    return QuadrupletLoss(None, **kw).compute_loss_from_embeddings(list(emb)).item()


def test_loss_is_zero_when_both_margins_hold():
    # d(q,p) + 0.5 ≤ d(q,h) and d(q,p) + 0.25 ≤ d(h,s)
    assert D_QP + 0.5 <= D_QH and D_QP + 0.25 <= D_HS
    assert loss_of((Q, P, H, S)) == 0.0
    assert loss_of((Q, P, H, S), variant="ordered") == 0.0


def test_hard_simple_values_by_hand():
    trip = 1.0 + D_QP - D_QH  # 0.4802
    quad = 0.6 + D_QP - D_HS  # 0.0802
    assert loss_of((Q, P, H, S), margin=1.0, quad_margin=0.6) == pytest.approx(
        trip + quad, abs=1e-6
    )
    assert loss_of((Q, P, H, S), margin=1.0, quad_margin=0.6, quad_weight=2.0) == pytest.approx(
        trip + 2 * quad, abs=1e-6
    )
    assert loss_of((Q, P, H, S), margin=1.0, quad_margin=0.6, quad_weight=0.0) == pytest.approx(
        trip, abs=1e-6
    )


def test_ordered_variant_values_by_hand():
    # [m2 + d(q,h) − d(q,s)]_+ + [m2 + d(q,p) − d(q,s)]_+ with m2 = 0.7 → 0.1142 + 0
    expected = max(0.0, 0.7 + D_QH - D_QS) + max(0.0, 0.7 + D_QP - D_QS)
    assert expected == pytest.approx(0.114214, abs=1e-6)
    assert loss_of((Q, P, H, S), variant="ordered", quad_margin=0.7) == pytest.approx(
        expected, abs=1e-6
    )
    # with m2 = 1.2 both hinge terms are active
    both = (1.2 + D_QH - D_QS) + (1.2 + D_QP - D_QS)
    assert loss_of((Q, P, H, S), variant="ordered", quad_margin=1.2) == pytest.approx(
        both, abs=1e-6
    )


def test_cosine_distance_values_by_hand():
    # trip = 1 + 0.4 − 1 = 0.4, quad = 0.8 + 0.4 − 1 = 0.2
    got = loss_of((Q, P, H, S), distance="cosine", margin=1.0, quad_margin=0.8)
    assert got == pytest.approx(0.6, abs=1e-6)


def test_batch_mean_and_normalisation():
    # a second row with zero loss halves the mean; scaling inputs changes nothing (normalised)
    zero_row = (Q, Q, -Q, Q)  # d(q,p) = 0, d(q,h) = d(h,s) = 2
    emb = [torch.cat([a, b]) for a, b in zip((Q, P, H, S), zero_row, strict=True)]
    single = loss_of((Q, P, H, S), margin=1.0, quad_margin=0.6)
    assert loss_of(emb, margin=1.0, quad_margin=0.6) == pytest.approx(single / 2, abs=1e-6)
    scaled = [3.0 * e for e in emb]
    assert loss_of(scaled, margin=1.0, quad_margin=0.6) == pytest.approx(single / 2, abs=1e-6)
    # without normalisation the raw lengths count
    assert loss_of(scaled, margin=1.0, quad_margin=0.6, normalize=False) != pytest.approx(
        single / 2
    )


def test_gradient_reaches_all_four_inputs():
    g = torch.Generator().manual_seed(0)
    emb = [torch.randn(3, 8, generator=g).requires_grad_(True) for _ in range(4)]
    # margins of 2 keep every hinge active on unit vectors
    loss = QuadrupletLoss(None, margin=2.0, quad_margin=2.0).compute_loss_from_embeddings(emb)
    loss.backward()
    for name, t in zip(("anchor", "positive", "hard", "simple"), emb, strict=True):
        assert t.grad is not None and t.grad.abs().sum() > 0, name


def test_gradient_reaches_all_four_columns_through_the_model(tiny_st):
    feats = [tiny_st.preprocess(t) for t in TEXTS]
    loss = QuadrupletLoss(tiny_st, margin=1.5, quad_margin=1.5)
    value = loss(feats, None)
    assert value.item() > 0
    value.backward()
    emb_grad = tiny_st[0].auto_model.embeddings.word_embeddings.weight.grad
    for column in TEXTS:  # each column's own tokens receive gradient
        ids = set(tiny_st.preprocess(column)["input_ids"].flatten().tolist())
        assert any(emb_grad[i].abs().sum() > 0 for i in ids)


@pytest.mark.parametrize(
    ("distance", "metric"),
    [("euclidean", TripletDistanceMetric.EUCLIDEAN), ("cosine", TripletDistanceMetric.COSINE)],
)
def test_quad_weight_zero_equals_triplet_loss_on_embeddings(distance, metric):
    g = torch.Generator().manual_seed(0)
    emb = [F.normalize(torch.randn(16, 8, generator=g), dim=-1) for _ in range(4)]
    for margin in (0.25, 0.5, 1.0):
        ours = QuadrupletLoss(None, margin=margin, quad_weight=0.0, distance=distance)
        ref = TripletLoss(None, distance_metric=metric, triplet_margin=margin)
        a = ours.compute_loss_from_embeddings(emb)
        b = ref.compute_loss_from_embeddings(emb[:3], None)
        assert b.item() > 0
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_quad_weight_zero_equals_triplet_loss_through_the_model(tiny_st):
    from sentence_transformers.sentence_transformer.modules import Normalize

    feats = [tiny_st.preprocess(t) for t in TEXTS]
    with torch.no_grad():
        # a model without Normalize: compare with normalize=False
        ours = QuadrupletLoss(tiny_st, quad_weight=0.0, normalize=False)(feats, None)
        ref = TripletLoss(tiny_st, triplet_margin=0.5)(feats[:3], None)
        # TripletLoss merges 2 candidate columns, we merge 3: equal up to padding round-off
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
        # with a Normalize module (as in all-MiniLM-L6-v2) the default normalize=True matches too
        tiny_st.append(Normalize())
        ours = QuadrupletLoss(tiny_st, quad_weight=0.0)(feats, None)
        ref = TripletLoss(tiny_st, triplet_margin=0.5)(feats[:3], None)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
        assert ref.item() > 0


def test_in_batch_term_is_cross_entropy_over_batch_documents():
    g = torch.Generator().manual_seed(1)
    emb = [F.normalize(torch.randn(4, 8, generator=g), dim=-1) for _ in range(4)]
    base = QuadrupletLoss(None).compute_loss_from_embeddings(emb)
    mixed = QuadrupletLoss(None, in_batch_weight=0.5, scale=20.0).compute_loss_from_embeddings(emb)
    q, docs = emb[0], torch.cat(emb[1:])  # candidates: all p, then all h, then all s
    ce = F.cross_entropy(20.0 * q @ docs.T, torch.arange(4))
    torch.testing.assert_close(mixed, base + 0.5 * ce, rtol=0, atol=1e-5)


def test_several_hard_negatives_average_the_terms():
    """3 + N columns: each term is the mean over h_1 … h_N (N = 1 is the four-column loss)."""
    h2 = torch.tensor([[0.8, 0.6]])  # a harder negative: closer to q than H
    kw = dict(margin=1.0, quad_margin=0.6)
    for variant in ("hard_simple", "ordered"):
        one = loss_of((Q, P, H, S), variant=variant, **kw)
        other = loss_of((Q, P, h2, S), variant=variant, **kw)
        both = loss_of((Q, P, H, h2, S), variant=variant, **kw)
        if variant == "hard_simple":
            assert both == pytest.approx((one + other) / 2, abs=1e-6)
        else:  # the [m2 + d(q,p) − d(q,s)]_+ part does not depend on h: counted once
            shared = max(0.0, 0.6 + D_QP - D_QS)
            assert both == pytest.approx((one + other) / 2, abs=1e-6)
            assert shared == 0.0
    assert both != pytest.approx(one)


def test_several_hard_negative_columns_through_the_model_and_the_trainer(tiny_st, tmp_path):
    """A dataset with hard_negative_1..3 trains through SentenceTransformerTrainer unchanged."""
    from quadbert.train import as_quadruplet_dataset, default_training_args, train_with_loss

    rows = {
        "anchor": TEXTS[0] * 4,
        "positive": TEXTS[1] * 4,
        "hard_negative_1": TEXTS[2] * 4,
        "hard_negative_2": TEXTS[3] * 4,
        "hard_negative_3": TEXTS[2][::-1] * 4,
        "simple_negative": TEXTS[3][::-1] * 4,
        "query_id": [str(i) for i in range(8)],
    }
    ds = as_quadruplet_dataset(rows)
    assert ds.column_names == [
        "anchor", "positive", "hard_negative_1", "hard_negative_2", "hard_negative_3",
        "simple_negative",
    ]  # fmt: skip
    loss = QuadrupletLoss(tiny_st)
    feats = [tiny_st.preprocess(ds[c][:2]) for c in ds.column_names]
    value = loss(feats, None)
    assert value.ndim == 0 and value.item() > 0
    args = default_training_args(
        tmp_path, max_steps=2, per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True
    )
    trainer = train_with_loss(tiny_st, ds, loss, args)
    assert trainer.state.global_step == 2


@pytest.mark.parametrize("n", [2, 3])
def test_wrong_column_count_raises(tiny_st, n):
    feats = [tiny_st.preprocess(["a comet", "a river"]) for _ in range(n)]
    msg = r"QuadrupletLoss expects \(anchor, positive, hard_negative, simple_negative\)"
    with pytest.raises(ValueError, match=msg):
        QuadrupletLoss(tiny_st)(feats, None)
    with pytest.raises(ValueError, match=msg):
        QuadrupletLoss(tiny_st).compute_loss_from_embeddings([Q] * n)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"margin": -0.1}, "margin must be >= 0"),
        ({"quad_margin": -1}, "quad_margin must be >= 0"),
        ({"quad_weight": -0.5}, "quad_weight must be >= 0"),
        ({"in_batch_weight": -1}, "in_batch_weight must be >= 0"),
        ({"distance": "manhattan"}, "distance must be 'euclidean' or 'cosine'"),
        ({"variant": "chen"}, "variant must be 'hard_simple' or 'ordered'"),
        ({"scale": 0}, "scale must be > 0"),
    ],
)
def test_bad_hyper_parameters_raise(kwargs, msg):
    with pytest.raises(LossConfigError, match=msg) as err:
        QuadrupletLoss(None, **kwargs)
    assert isinstance(err.value, ValueError)


def test_unsatisfiable_margin_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="quadbert.losses"):
        QuadrupletLoss(None, margin=2.5)
    assert "margin=2.5 > 2 can never be satisfied" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="quadbert.losses"):
        QuadrupletLoss(None, margin=2.0, quad_margin=1.0)
    assert caplog.text == ""


def test_config_and_citation():
    loss = QuadrupletLoss(None)
    assert loss.get_config_dict() == {
        "margin": 0.5,
        "quad_margin": 0.25,
        "quad_weight": 1.0,
        "distance": "euclidean",
        "variant": "hard_simple",
        "in_batch_weight": 0.0,
        "scale": 20.0,
        "normalize": True,
    }
    assert "Liu, Peiyang" in loss.citation and "10.18653/v1/2021.naacl-main.292" in loss.citation
