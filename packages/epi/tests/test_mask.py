from __future__ import annotations

import math
import warnings

import pytest
import torch

from epi import EPIConfig, EPIConfigError, EPIWarning, IsolationMask, top_p_global, top_p_per_layer
from epi.mask import top_k_flat


def test_exact_count_and_deterministic_ties() -> None:
    x = torch.ones(10)
    m = top_k_flat(x, 3)
    assert m.tolist() == [True] * 3 + [False] * 7
    x = torch.tensor([0.5, 2.0, 1.0, 1.0, 1.0, 0.1])
    assert top_k_flat(x, 3).tolist() == [False, True, True, True, False, False]
    assert top_k_flat(x, 2).tolist() == [False, True, True, False, False, False]
    scores = {
        "a": torch.rand(7, 3, generator=torch.Generator().manual_seed(0)),
        "b": torch.rand(11),
    }
    for p in (0.01, 0.1, 0.33, 0.9):
        g = top_p_global(scores, p)
        assert sum(int(v.sum()) for v in g.values()) == math.ceil(p * 32)
        pl = top_p_per_layer(scores, p)
        assert int(pl["a"].sum()) == math.ceil(p * 21) and int(pl["b"].sum()) == math.ceil(p * 11)


def test_jaccard_density_drift_state_dict() -> None:
    a = IsolationMask({"w": torch.tensor([True, True, False, False])})
    b = IsolationMask({"w": torch.tensor([False, True, True, False])})
    assert a.jaccard(b) == pytest.approx(1 / 3)
    assert a.density() == 0.5
    d = b.drift(a)
    assert d["protected"] == 1 and d["released"] == 1
    c = IsolationMask.empty({"w": torch.zeros(4)})
    c.load_state_dict(a.state_dict())
    assert c.jaccard(a) == 1.0
    assert (
        IsolationMask.empty({"w": torch.zeros(2)}).jaccard(
            IsolationMask.empty({"w": torch.zeros(2)})
        )
        == 1.0
    )


def test_hysteresis_keeps_near_misses() -> None:
    from epi import EvolvingIsolation

    lin = torch.nn.Linear(10, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.ones(1, 10))

    def run(release_factor: float) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = EPIConfig(
            isolation_ratio=0.2,
            ema_beta=0.0,
            release_factor=release_factor,
            normalization="none",
            exclude=None,
            update_interval=1,
        )
        iso = EvolvingIsolation(lin, cfg)
        lin.weight.grad = torch.tensor([[10.0, 9.0, 1, 1, 1, 1, 1, 1, 1, 1]])
        iso.after_backward()
        iso.rebuild_mask()
        first = iso.masks["weight"].clone()
        lin.weight.grad = torch.tensor(
            [[10.0, 1, 9.5, 8.0, 1, 1, 1, 1, 1, 1]]
        )  # element 1 drops to rank 4
        iso.after_backward()
        iso.rebuild_mask()
        return first, iso.masks["weight"].clone()

    first, second = run(1.0)
    assert first[0, :2].all() and int(second.sum()) == 2 and not second[0, 1]
    _, kept = run(2.0)  # rank 4 ≤ p·r·n = 4: element 1 stays isolated
    assert kept[0, 1] and kept[0, 0] and kept[0, 2] and int(kept.sum()) == 3


def test_config_errors_and_warnings() -> None:
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(EPIConfigError, match="isolation_ratio"):
            EPIConfig(isolation_ratio=bad)
    with pytest.raises(EPIConfigError, match="update_interval"):
        EPIConfig(update_interval=0)
    with pytest.raises(EPIConfigError, match="per_task"):
        EPIConfig(mode="freeze_other_tasks")
    with pytest.raises(EPIConfigError, match="importance"):
        EPIConfig(importance="hessian")  # type: ignore[arg-type]
    with pytest.warns(EPIWarning, match="0.5"):
        EPIConfig(isolation_ratio=0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EPIConfig(isolation_ratio=0.5)
