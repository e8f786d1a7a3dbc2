"""Exact reductions of the soft-label objectives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kls import UniformLabelSmoother, soft_cross_entropy, soft_target_loss, two_head_loss
from kls.errors import OutOfRangeError


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g, requires_grad=True)
    aux = torch.randn(8, 5, generator=g, requires_grad=True)
    hard = torch.randint(0, 5, (8,), generator=g)
    q = torch.softmax(torch.randn(8, 5, generator=g), dim=-1)
    return logits, aux, hard, q


def test_two_head_alpha_zero_is_plain_cross_entropy(batch):
    logits, aux, hard, q = batch
    assert torch.equal(
        two_head_loss(logits, aux, hard, q, alpha=0.0), F.cross_entropy(logits, hard)
    )


def test_two_head_reference_formula(batch):
    logits, aux, hard, q = batch
    ce = [-torch.log_softmax(logits[i], -1)[hard[i]] for i in range(8)]
    mse = [((q[i] - torch.softmax(aux[i], -1)) ** 2).mean() for i in range(8)]
    alpha = 1.0
    expect = sum(c + alpha * m for c, m in zip(ce, mse, strict=True)) / 8 / (1 + alpha) ** 2
    assert two_head_loss(logits, aux, hard, q, alpha=1.0).item() == pytest.approx(
        expect.item(), rel=1e-6
    )


def test_two_head_gradients_reach_only_aux_head_through_mse(batch):
    logits, aux, hard, q = batch
    two_head_loss(logits, aux, hard, q, alpha=1.0).backward()
    g_logits = torch.autograd.grad(F.cross_entropy(logits, hard) / 4, logits)[0]
    assert torch.allclose(logits.grad, g_logits, atol=1e-7)
    assert aux.grad.abs().sum() > 0


def test_lambda_zero_is_plain_cross_entropy(batch):
    logits, _, hard, q = batch
    assert torch.equal(soft_target_loss(logits, hard, q, lam=0.0), F.cross_entropy(logits, hard))


def test_kl_term_matches_its_definition(batch):
    logits, _, hard, q = batch
    logp = torch.log_softmax(logits, -1)
    kl = (q * (q.log() - logp)).sum(-1).mean()
    got = soft_target_loss(logits, hard, q, lam=0.5)
    assert got.item() == pytest.approx((F.cross_entropy(logits, hard) + 0.5 * kl).item(), rel=1e-6)


def test_uniform_soft_targets_equal_torch_label_smoothing(batch):
    logits, _, hard, _ = batch
    eps = 0.1
    texts = [str(i) for i in range(8)]
    soft = UniformLabelSmoother(eps).fit(texts + ["x"] * 5, [*hard.tolist(), 0, 1, 2, 3, 4])
    targets = torch.tensor(soft.transform(texts, hard.tolist()), dtype=torch.float32)
    ours = soft_cross_entropy(logits, targets)
    ref = F.cross_entropy(logits, hard, label_smoothing=eps)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_negative_or_nan_weights_raise(batch, bad):
    logits, aux, hard, q = batch
    with pytest.raises(OutOfRangeError):
        soft_target_loss(logits, hard, q, lam=bad)
    with pytest.raises(OutOfRangeError):
        two_head_loss(logits, aux, hard, q, alpha=bad)
