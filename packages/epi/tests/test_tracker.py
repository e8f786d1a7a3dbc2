from __future__ import annotations

import math

import pytest
import torch

from epi import (
    EPIConfig,
    EvolvingIsolation,
    MissingTaskIdError,
    NoParametersMatchedError,
    ParameterImportanceTracker,
    StateMemoryError,
    select_parameters,
)


def _set_grads(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, p in model.named_parameters():
        p.grad = torch.randn(p.shape, generator=g)
        out[n] = p.grad.clone()
    return out


@pytest.mark.parametrize(
    "kind,fn",
    [
        ("taylor", lambda th, g: (th * g).abs()),
        ("grad_abs", lambda th, g: g.abs()),
        ("fisher", lambda th, g: g * g),
    ],
)
def test_ema_closed_form(mlp, kind, fn) -> None:
    cfg = EPIConfig(ema_beta=0.8, importance=kind, exclude=None)
    tr = ParameterImportanceTracker(select_parameters(mlp, cfg), cfg)
    theta = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    g1 = _set_grads(mlp, 1)
    assert tr.accumulate()
    g2 = _set_grads(mlp, 2)
    assert tr.accumulate()
    for n in theta:
        s1, s2 = fn(theta[n], g1[n]), fn(theta[n], g2[n])
        expected = 0.8 * (0.2 * s1) + 0.2 * s2  # I_0 = 0; I_t = β I_{t-1} + (1-β) s_t
        torch.testing.assert_close(tr.raw()[n], expected, rtol=1e-6, atol=1e-7)
    # layer-mean normalisation: Î = I / (mean I + ε)
    for n, t in tr.normalized().items():
        torch.testing.assert_close(t, tr.raw()[n] / (tr.raw()[n].mean() + cfg.epsilon))


def test_none_grads_skipped_and_nonfinite_step_skipped(mlp) -> None:
    cfg = EPIConfig(ema_beta=0.5, exclude=None)
    tr = ParameterImportanceTracker(select_parameters(mlp, cfg), cfg)
    _set_grads(mlp, 1)
    mlp.fc2.weight.grad = None
    tr.accumulate()
    assert float(tr.raw()["fc2.weight"].abs().sum()) == 0.0
    before = {n: t.clone() for n, t in tr.raw().items()}
    _set_grads(mlp, 2)
    mlp.fc1.bias.grad[0] = float("inf")
    assert tr.accumulate() is False
    assert tr.skipped_nonfinite == 1
    for n, t in tr.raw().items():
        assert torch.equal(t, before[n])


def test_bf16_state(make_mlp) -> None:
    m = make_mlp()
    cfg = EPIConfig(state_dtype=torch.bfloat16, exclude=None)
    tr = ParameterImportanceTracker(select_parameters(m, cfg), cfg)
    _set_grads(m, 0)
    tr.accumulate()
    assert all(t.dtype == torch.bfloat16 for t in tr.raw().values())


def test_scaled_layer_does_not_take_whole_mask(make_mlp) -> None:
    """fc1 scores ×100 (its weights ×100): with layer-mean normalisation both layers share the mask."""
    m = make_mlp(d_in=32, d_hidden=32, d_out=32)
    with torch.no_grad():
        m.fc1.weight.mul_(100.0)
    for norm, big_takes_all in [("none", True), ("layer_mean", False)]:
        cfg = EPIConfig(
            isolation_ratio=0.1,
            ema_beta=0.0,
            normalization=norm,
            include=["weight"],
            exclude=None,
            update_interval=1,
        )
        iso = EvolvingIsolation(m, cfg)
        _set_grads(m, 3)
        iso.after_backward()
        iso.rebuild_mask()
        k = math.ceil(0.1 * 2 * 32 * 32)
        n1, n2 = int(iso.masks["fc1.weight"].sum()), int(iso.masks["fc2.weight"].sum())
        assert n1 + n2 == k
        if big_takes_all:
            assert n2 == 0
        else:
            assert 0.3 * k < n1 < 0.7 * k and 0.3 * k < n2 < 0.7 * k, (n1, n2)


def test_per_task_requires_task_id_and_registers_new_tasks(mlp) -> None:
    cfg = EPIConfig(track="per_task", exclude=None)
    tr = ParameterImportanceTracker(select_parameters(mlp, cfg), cfg)
    _set_grads(mlp, 0)
    with pytest.raises(MissingTaskIdError, match="task_id"):
        tr.accumulate(None)
    tr.accumulate(0)
    tr.accumulate(5)
    assert tr.tasks == [0, 5]


def test_selection_errors_and_memory_limit(mlp) -> None:
    with pytest.raises(NoParametersMatchedError, match=r"fc1\.weight"):
        select_parameters(mlp, EPIConfig(include=["nothing_like_this"]))
    cfg = EPIConfig(max_state_gb=1e-9, exclude=None)
    with pytest.raises(StateMemoryError, match="pooled"):
        ParameterImportanceTracker(select_parameters(mlp, cfg), cfg)
    mlp.fc1.weight.requires_grad_(False)
    names = select_parameters(mlp, EPIConfig(exclude=None))
    assert "fc1.weight" not in names
