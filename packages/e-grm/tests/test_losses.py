"""HybridRankRegLoss: λ = 1 / λ = 0 limits, within-group pairs only, gradient direction, named errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from egrm_reward import GroupSizeError, HybridRankRegLoss, ShapeMismatchError, TargetError

S = torch.tensor([0.3, -1.2, 2.0, 0.1, 0.5, -0.4, 1.5])
Q = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.9, 0.0, 0.9])
G = torch.tensor([0, 0, 0, 1, 1, 2, 2])


def pairwise_by_hand(s, q, g, margin=0.0, delta=0.0):
    terms = []
    for j, k in itertools.permutations(range(len(s)), 2):
        if g[j] == g[k] and q[j] > q[k] + delta:
            terms.append(-F.logsigmoid(s[j] - s[k] - margin))
    return torch.stack(terms).mean()


def test_lambda_one_is_the_regression_term():
    loss = HybridRankRegLoss(lam=1.0)(S, Q, G)
    assert torch.allclose(loss, ((torch.sigmoid(S) - Q) ** 2).mean())
    bce = HybridRankRegLoss(lam=1.0, reg_loss="bce")(S, Q, G)
    assert torch.allclose(bce, F.binary_cross_entropy_with_logits(S, Q))


@pytest.mark.parametrize("margin,delta", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.3)])
def test_lambda_zero_is_the_pairwise_term(margin, delta):
    loss = HybridRankRegLoss(lam=0.0, margin=margin, delta=delta)(S, Q, G)
    assert torch.allclose(loss, pairwise_by_hand(S, Q, G, margin, delta))
    # RankNet cross-check: −log σ(d) = softplus(−d)
    assert torch.allclose(F.softplus(-(S[0] - S[1])), -F.logsigmoid(S[0] - S[1]))


def test_hybrid_is_the_convex_combination():
    lam = 0.3
    reg = ((torch.sigmoid(S) - Q) ** 2).mean()
    assert torch.allclose(
        HybridRankRegLoss(lam=lam)(S, Q, G), lam * reg + (1 - lam) * pairwise_by_hand(S, Q, G)
    )


def test_relabelling_groups_changes_nothing_and_cross_pairs_are_excluded():
    loss = HybridRankRegLoss(lam=0.0)
    relabelled = torch.tensor([7, 7, 7, -3, -3, 42, 42])
    assert torch.allclose(loss(S, Q, G), loss(S, Q, relabelled))
    # reorder the batch (groups interleaved): same loss
    perm = torch.tensor([3, 0, 5, 1, 4, 2, 6])
    assert torch.allclose(loss(S, Q, G), loss(S[perm], Q[perm], G[perm]))
    # one big group would add cross pairs and change the value
    one = torch.zeros_like(G)
    assert not torch.allclose(loss(S, Q, G), loss(S, Q, one))


def test_gradient_pushes_the_better_path_up():
    for lam in (0.0, 0.5, 1.0):
        s = torch.zeros(4, requires_grad=True)
        q = torch.tensor([1.0, 0.0, 0.8, 0.1])
        HybridRankRegLoss(lam=lam)(s, q, torch.tensor([0, 0, 1, 1])).backward()
        # gradient descent moves s by −grad: better paths up, worse down
        assert s.grad[0] < 0 < s.grad[1], lam
        assert s.grad[2] < 0 < s.grad[3], lam


def test_all_equal_groups_add_only_regression():
    q = torch.tensor([0.5, 0.5, 1.0, 1.0])
    g = torch.tensor([0, 0, 1, 1])
    s = torch.tensor([0.1, 0.7, -0.2, 0.4])
    assert HybridRankRegLoss(lam=0.0)(s, q, g).item() == 0.0
    assert torch.allclose(
        HybridRankRegLoss(lam=0.5)(s, q, g), 0.5 * ((torch.sigmoid(s) - q) ** 2).mean()
    )
    assert HybridRankRegLoss(lam=0.0, rank_loss="listnet")(s, q, g).item() == 0.0


def test_hinge_and_listnet():
    s = torch.tensor([1.0, 0.2, 0.0, 0.5])
    q = torch.tensor([1.0, 0.0, 0.0, 1.0])
    g = torch.tensor([0, 0, 1, 1])
    hinge = HybridRankRegLoss(lam=0.0, margin=1.0, rank_loss="margin_hinge")(s, q, g)
    assert torch.allclose(hinge, torch.tensor((max(0, 1 - 0.8) + max(0, 1 - 0.5)) / 2))
    ln = HybridRankRegLoss(lam=0.0, rank_loss="listnet")(s, q, g)
    want = torch.stack(
        [
            -(torch.softmax(q[i], 0) * torch.log_softmax(s[i], 0)).sum()
            for i in (slice(0, 2), slice(2, 4))
        ]
    ).mean()
    assert torch.allclose(ln, want)


def test_named_errors():
    loss = HybridRankRegLoss()
    with pytest.raises(TargetError, match="NaN"):
        loss(S, torch.tensor([1.0, float("nan"), 0, 0, 0, 0, 0]), G)
    with pytest.raises(GroupSizeError, match="group sizes"):
        loss(S[:4], Q[:4], G[:4])  # group 1 has a single path
    with pytest.raises(ShapeMismatchError, match="same length"):
        loss(S, Q[:3], G)
    with pytest.raises(TargetError, match=r"\[0, 1\]"):
        HybridRankRegLoss(reg_loss="bce")(S, Q * 2, G)
    with pytest.raises(ValueError, match="lam"):
        HybridRankRegLoss(lam=1.5)
    with pytest.raises(ValueError, match="rank_loss"):
        HybridRankRegLoss(rank_loss="lambdarank")
