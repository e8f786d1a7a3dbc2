"""RSA: the curvature estimator on an analytic quadratic, and the hooks on tiny Llama / Qwen2 models."""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from neurosym_cal.errors import UnsupportedArchitectureError
from neurosym_cal.rsa import (
    RSAConfig,
    RSAInputError,
    curvature_probe,
    encode_for_rsa,
    feature_names,
    perturbed_scores,
    reasoning_sensitivity,
    resolve_layers,
    sensitivity_from_losses,
)

torch.set_num_threads(1)

PROMPT = "Write a function add(a, b) that returns the sum.\n"
COMPLETION = "We add the two numbers.\n```python\ndef add(a, b):\n    return a + b\n```"
SPAN = (COMPLETION.index("def"), COMPLETION.index("```", COMPLETION.index("def")))
FAST = RSAConfig(layers=(0.5, 1.0), eps=(0.01, 0.05), n_dirs=2, batch_size=4)


# -- the estimator on L(h) = ½ hᵀAh ----------------------------------------------------------------


def _quadratic(d=8, seed=0, pd=True):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=g, dtype=torch.float64)
    A = M @ M.T + 0.1 * torch.eye(d, dtype=torch.float64) if pd else (M + M.T) / 2
    h = torch.randn(d, generator=g, dtype=torch.float64)
    return A, h, (lambda x: 0.5 * x @ A @ x)


@pytest.mark.parametrize("eps", [1e-3, 0.1, 2.0])
def test_kappa_equals_uAu_exactly(eps):
    A, h, L = _quadratic(pd=False)
    u = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u = u / u.norm(dim=-1, keepdim=True)
    for ui in u:
        kappa, slope = curvature_probe(L, h, ui[None], eps)
        assert kappa == pytest.approx(float(ui @ A @ ui), rel=1e-7, abs=1e-9)
        assert slope == pytest.approx(abs(float(h @ A @ ui)), rel=1e-6, abs=1e-9)  # |∇Lᵀu|


def test_kappa_mean_is_trace_over_d_and_nonnegative():
    A, h, L = _quadratic(d=10, seed=3)
    n = 4000
    u = torch.randn(n, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    u = u / u.norm(dim=-1, keepdim=True)  # uniform on the sphere: E[uᵀAu] = tr(A)/d
    per = np.array([curvature_probe(L, h, ui[None], 0.05)[0] for ui in u])
    assert (per >= 0).all()  # A positive definite
    target = float(torch.trace(A)) / 10
    assert abs(per.mean() - target) < 4 * per.std() / np.sqrt(n)
    pooled, _ = curvature_probe(L, h, u, 0.05)  # the estimator averages over directions
    assert pooled == pytest.approx(per.mean(), rel=1e-9)


def test_sensitivity_from_losses_shapes():
    k, g = sensitivity_from_losses(1.0, [1.5, 1.2], [1.1, 1.0], eps=0.5)
    assert k == pytest.approx(((0.5 + 0.1) + (0.2 + 0.0)) / 2 / 0.25)
    assert g == pytest.approx((0.4 + 0.2) / 2 / 1.0)
    with pytest.raises(RSAInputError):
        sensitivity_from_losses(1.0, [1.0, 2.0], [1.0], eps=0.1)


# -- on tiny models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    from papercore.testing import build_causal_tokenizer

    return build_causal_tokenizer()


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model(request, tok):
    from papercore.testing import tiny_causal_lm

    return tiny_causal_lm(request.param, tokenizer=tok, seed=0)


def test_keys_finite_and_deterministic(model, tok):
    f1 = reasoning_sensitivity(model, tok, PROMPT, COMPLETION, SPAN, FAST)
    assert list(f1) == feature_names(FAST)
    assert len(f1) == 4 * 2 * 2 + 8
    assert all(np.isfinite(v) for v in f1.values())
    assert all(0 <= f1[k] <= 1 for k in f1 if k.endswith("_flip"))
    assert all(f1[k] >= -1e-6 for k in f1 if k.endswith("_kl"))
    assert f1 == reasoning_sensitivity(model, tok, PROMPT, COMPLETION, SPAN, FAST)
    other = reasoning_sensitivity(
        model, tok, PROMPT, COMPLETION, SPAN, RSAConfig(**{**FAST.to_dict(), "seed": 1})
    )
    assert other != f1
    # a larger nudge moves the next-token distribution more
    assert f1["rsa_d0.5_e0.05_kl"] > f1["rsa_d0.5_e0.01_kl"]


def _base(model, seq):
    with torch.no_grad():
        logits = model(input_ids=seq.ids, use_cache=False).logits
    a = seq.answer
    lp = torch.log_softmax(logits[:, a.start - 1 : a.stop - 1].float(), -1)
    nll = float(-lp[0].gather(-1, seq.ids[0, a].view(-1, 1)).mean())
    return lp, nll


def _dirs(seq, d, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, seq.ids.shape[1], d)
    r = seq.perturb
    u = torch.randn(n, r.stop - r.start, d, generator=g)
    out[:, r] = u / u.norm(dim=-1, keepdim=True)
    return out


def test_stacked_copies_equal_one_at_a_time(model, tok):
    from papercore.layers import decoder_layers

    seq = encode_for_rsa(tok, PROMPT, COMPLETION, SPAN, FAST)
    lp, _ = _base(model, seq)
    dirs = _dirs(seq, model.config.hidden_size, 8)
    layer = decoder_layers(model)[1]
    stacked = perturbed_scores(model, layer, seq, dirs, 0.05, 8, lp)
    single = perturbed_scores(model, layer, seq, dirs, 0.05, 1, lp)
    for a, b in zip(stacked, single, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert len(set(np.round(stacked[0], 8))) == 8  # every copy was perturbed differently


def test_eps_to_zero_gives_zero_change(model, tok):
    from papercore.layers import decoder_layers

    seq = encode_for_rsa(tok, PROMPT, COMPLETION, SPAN, FAST)
    lp, nll0 = _base(model, seq)
    dirs = _dirs(seq, model.config.hidden_size, 4)
    layer = decoder_layers(model)[0]
    big = perturbed_scores(model, layer, seq, dirs, 0.5, 4, lp)
    tiny = perturbed_scores(model, layer, seq, dirs, 1e-7, 4, lp)
    assert np.abs(tiny[0] - nll0).max() < 1e-5
    assert np.abs(tiny[1]).max() < 1e-6 and (tiny[2] == 0).all()  # fp32 rounding only
    assert big[1].min() > 1e3 * np.abs(tiny[1]).max()
    assert np.abs(big[0] - nll0).max() > 100 * np.abs(tiny[0] - nll0).max()


def test_gradient_mode_is_steeper_than_random(model, tok):
    cfg = RSAConfig(layers=(1.0,), eps=(1e-3,), n_dirs=4)
    rnd = reasoning_sensitivity(model, tok, PROMPT, COMPLETION, SPAN, cfg)
    grad = reasoning_sensitivity(
        model, tok, PROMPT, COMPLETION, SPAN, RSAConfig(**{**cfg.to_dict(), "mode": "gradient"})
    )
    assert list(grad) == list(rnd)
    assert grad["rsa_d1_e0.001_slope"] > rnd["rsa_d1_e0.001_slope"]


def test_empty_answer_span_raises(model, tok):
    with pytest.raises(ValueError, match="no tokens"):
        reasoning_sensitivity(model, tok, PROMPT, COMPLETION, (5, 5), FAST)
    with pytest.raises(RSAInputError, match="not inside"):
        reasoning_sensitivity(model, tok, PROMPT, COMPLETION, (0, 10_000), FAST)


def test_layer_out_of_range_and_relative_depths():
    assert resolve_layers((0.5, 0.75, 0.9, -1, 0), 24) == [12, 17, 21, 23, 0]
    with pytest.raises(RSAInputError, match="out of range"):
        resolve_layers((5,), 2)
    with pytest.raises(RSAInputError):
        RSAConfig(layers=(1.5,))


def test_left_truncation(tok, caplog):
    cfg = RSAConfig(max_len=30, max_perturb_tokens=3)
    with caplog.at_level(logging.WARNING, logger="neurosym_cal.rsa"):
        seq = encode_for_rsa(tok, PROMPT * 4, COMPLETION, SPAN, cfg)
    assert seq.ids.shape[1] == 30 and "truncating" in caplog.text
    assert seq.answer.stop == 30 and seq.perturb.start == seq.answer.start - 3
    with pytest.raises(RSAInputError, match="answer alone"):
        encode_for_rsa(tok, PROMPT, COMPLETION, SPAN, RSAConfig(max_len=8))


def test_unsupported_architecture(tok):
    with pytest.raises(UnsupportedArchitectureError, match="decoder layers"):
        reasoning_sensitivity(nn.Linear(4, 4), tok, PROMPT, COMPLETION, SPAN, FAST)


def test_fp16_on_cpu_is_cast_to_fp32_and_restored(tok, caplog):
    from papercore.testing import tiny_causal_lm

    m16 = tiny_causal_lm("llama", tokenizer=tok, seed=0).half()
    m32 = copy.deepcopy(m16).float()
    with caplog.at_level(logging.WARNING, logger="neurosym_cal.rsa"):
        f16 = reasoning_sensitivity(m16, tok, PROMPT, COMPLETION, SPAN, FAST)
    assert "cast to float32" in caplog.text
    assert next(m16.parameters()).dtype == torch.float16
    assert f16 == reasoning_sensitivity(m32, tok, PROMPT, COMPLETION, SPAN, FAST)


# -- a layer returning a tuple (transformers < 5.24 style) ------------------------------------------


class _Layer(nn.Module):
    def __init__(self, d, as_tuple):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.as_tuple = as_tuple

    def forward(self, h):
        out = h + torch.tanh(self.lin(h))
        return (out, None) if self.as_tuple else out


class _FakeLM(nn.Module):
    def __init__(self, vocab, d=16, as_tuple=True):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(hidden_size=d)
        self.model = nn.Module()
        self.model.embed = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList(_Layer(d, as_tuple) for _ in range(3))
        self.head = nn.Linear(d, vocab)

    def forward(self, input_ids, use_cache=False):
        h = self.model.embed(input_ids)
        for layer in self.model.layers:
            out = layer(h)
            h = out[0] if isinstance(out, tuple) else out
        return SimpleNamespace(logits=self.head(h))


def test_tuple_returning_layers(tok):
    fake_tuple, fake_tensor = _FakeLM(len(tok), as_tuple=True), _FakeLM(len(tok), as_tuple=False)
    fake_tensor.load_state_dict(fake_tuple.state_dict())
    ft = reasoning_sensitivity(fake_tuple, tok, PROMPT, COMPLETION, SPAN, FAST)
    assert all(np.isfinite(v) for v in ft.values()) and ft["rsa_max_kl"] > 0
    assert ft == reasoning_sensitivity(fake_tensor, tok, PROMPT, COMPLETION, SPAN, FAST)
