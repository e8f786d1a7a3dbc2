from __future__ import annotations

import math

import pytest
import torch

from epi import (
    EPIConfig,
    EvolvingIsolation,
    RandomIsolation,
    ShardedParametersError,
    StaticIsolation,
    unwrap_optimizer,
    wrap_optimizer,
)


def _batch(seed: int, n: int = 16, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, 4, (n,), generator=g)


def _step(model, opt, iso, seed: int, task_id=None, clip: float | None = 1.0) -> None:
    x, y = _batch(seed)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    iso.after_backward(task_id)
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    iso.current_task = task_id
    opt.step()
    opt.zero_grad()


@pytest.mark.parametrize("cls", [EvolvingIsolation, StaticIsolation, RandomIsolation])
def test_masked_elements_bit_identical_under_adamw(mlp, cls) -> None:
    """10 warm-up steps build AdamW momentum; then 50 steps with a fixed mask: isolated elements are
    bit-identical although weight decay > 0 and momentum is warm; the others move."""
    cfg = EPIConfig(isolation_ratio=0.3, update_interval=1000, warmup_steps=10, exclude=None)
    iso = cls(mlp, cfg)
    opt = wrap_optimizer(torch.optim.AdamW(mlp.parameters(), lr=1e-2, weight_decay=0.1), iso)
    for s in range(10):
        _step(mlp, opt, iso, s)
    assert iso.built and iso.step == 10
    assert iso.mask.count() == math.ceil(0.3 * iso.mask.numel)
    before = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    for s in range(10, 60):
        _step(mlp, opt, iso, s)
    for n, p in mlp.named_parameters():
        m = iso.masks[n]
        assert torch.equal(p.detach()[m], before[n][m]), n
        assert (p.detach()[~m] != before[n][~m]).all(), n


def test_evolving_masks_freeze_each_step(mlp) -> None:
    cfg = EPIConfig(isolation_ratio=0.2, update_interval=3, exclude=None)
    iso = EvolvingIsolation(mlp, cfg)
    opt = wrap_optimizer(torch.optim.AdamW(mlp.parameters(), lr=1e-2, weight_decay=0.1), iso)
    prev = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    for s in range(15):
        _step(mlp, opt, iso, s)
        for n, p in mlp.named_parameters():
            m = iso.masks[n]
            assert torch.equal(p.detach()[m], prev[n][m])
        prev = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    assert [int(h["step"]) for h in iso.history] == [3, 6, 9, 12, 15]
    assert all(0.0 <= h["jaccard"] <= 1.0 for h in iso.history)


def test_freeze_other_tasks_moves_own_elements_only(mlp) -> None:
    cfg = EPIConfig(
        isolation_ratio=0.2,
        update_interval=1000,
        warmup_steps=4,
        track="per_task",
        mode="freeze_other_tasks",
        exclude=None,
    )
    iso = EvolvingIsolation(mlp, cfg)
    opt = wrap_optimizer(torch.optim.AdamW(mlp.parameters(), lr=1e-2, weight_decay=0.1), iso)
    for s in range(4):
        _step(mlp, opt, iso, s, task_id=s % 2)
    own = iso.mask.owners
    assert own is not None and set(own) == {0, 1}
    for k in (0, 1):
        other = 1 - k
        for s in range(5):
            before = {n: p.detach().clone() for n, p in mlp.named_parameters()}
            _step(mlp, opt, iso, 100 + s, task_id=k)
            for n, p in mlp.named_parameters():
                moved = p.detach() != before[n]
                only_other = own[other][n] & ~own[k][n]
                assert not moved[only_other].any(), (k, n)
                assert moved[own[k][n]].all(), (
                    k,
                    n,
                )  # task-k-owned elements train on task-k windows
                assert moved[~iso.masks[n]].all(), (k, n)  # unowned elements train for everybody


def test_manual_capture_and_unwrap(mlp) -> None:
    from accelerate import Accelerator

    cfg = EPIConfig(capture="manual", exclude=None, update_interval=2)
    iso = EvolvingIsolation(mlp, cfg)
    inner = torch.optim.SGD(mlp.parameters(), lr=0.1)
    wrapped = Accelerator(cpu=True).prepare_optimizer(inner)
    assert wrapped is not inner
    assert unwrap_optimizer(wrapped) is inner
    wrap_optimizer(wrapped, iso)
    x, y = _batch(0)
    torch.nn.functional.cross_entropy(mlp(x), y).backward()
    wrapped.step()
    assert iso.tracker.updates == {}  # manual capture: nothing read by the hook
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        unwrap_optimizer(object())


def test_sharded_params_raise(mlp) -> None:
    mlp.fc1.weight.ds_id = 3  # what DeepSpeed ZeRO-3 attaches
    with pytest.raises(ShardedParametersError, match="ZeRO-3"):
        EvolvingIsolation(mlp, EPIConfig(exclude=None))


def test_state_dict_round_trip_gives_identical_next_mask(make_mlp) -> None:
    def make():
        m = make_mlp()
        iso = EvolvingIsolation(m, EPIConfig(isolation_ratio=0.1, update_interval=4, exclude=None))
        return m, iso, wrap_optimizer(torch.optim.AdamW(m.parameters(), lr=1e-2), iso)

    m1, iso1, opt1 = make()
    for s in range(12):
        _step(m1, opt1, iso1, s)
    m2, iso2, opt2 = make()
    for s in range(6):
        _step(m2, opt2, iso2, s)
    state, model_state, opt_state = iso2.state_dict(), m2.state_dict(), opt2.state_dict()
    m3, iso3, opt3 = make()
    m3.load_state_dict(model_state)
    opt3.load_state_dict(opt_state)
    iso3.load_state_dict(state)
    for s in range(6, 12):
        _step(m3, opt3, iso3, s)
    for n in iso1.masks:
        assert torch.equal(iso1.masks[n], iso3.masks[n])
        assert torch.equal(iso1.tracker.raw()[n], iso3.tracker.raw()[n])
