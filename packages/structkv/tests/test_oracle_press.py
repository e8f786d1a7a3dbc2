"""OraclePress (ceiling) and RandomPress (floor): what they keep, per layer and KV head, and bad input."""

from __future__ import annotations

import pytest
import torch

from structkv import OraclePress, RandomPress, generate, prefill
from structkv._compat import get_layer_kv
from structkv.errors import PressConfigError


def _kept_positions(model, ids, press) -> list[set[int]]:
    """Per layer, the set of context positions each KV head kept (asserted equal across heads)."""
    full = prefill(model, ids)
    res = prefill(model, ids, press)
    out = []
    for layer in range(len(res.cache_lengths)):
        fk = get_layer_kv(full.cache, layer)[0][0]  # (H, N, d)
        ck = get_layer_kv(res.cache, layer)[0][0]  # (H, M, d)
        heads = []
        for h in range(ck.shape[0]):
            # keys are unique per position (RoPE): locate every kept key in the full cache
            d = (ck[h][:, None] - fk[h][None]).abs().amax(-1)
            heads.append(set(d.argmin(-1).tolist()))
        out.append(heads)
    return out, res


def test_oracle_keeps_the_given_positions_sinks_and_window_then_the_most_recent(
    make_model, context_ids
):
    model = make_model("llama", "sdpa", 4)
    n = context_ids.shape[1]  # 160
    given = [20, 21, 77, 100]
    press = OraclePress(compression_ratio=0.8, indices=given, n_sink=4, window_size=8)
    kept, res = _kept_positions(model, context_ids, press)
    m = round(0.2 * n)
    must = set(given) | set(range(4)) | set(range(n - 8, n))
    rest = m - len(must)
    recent = set(range(n - 8 - rest, n - 8))  # the most recent non-window tokens fill the budget
    for layer in kept:
        for heads in layer:
            assert heads == must | recent
    assert res.cache_lengths == [m] * 4
    assert res.stats["kv_fraction"] == pytest.approx(m / n)
    assert res.stats["oracle_coverage"] == 1.0


def test_oracle_per_row_indices_and_an_overfull_budget_keeps_the_earliest_given():
    from papercore.testing.builders import tiny_causal_lm

    torch.manual_seed(0)
    model = tiny_causal_lm("llama", num_hidden_layers=2)
    ids = torch.randint(3, 200, (2, 100), generator=torch.Generator().manual_seed(1))
    press = OraclePress(
        compression_ratio=0.9, indices=[[10, 11], list(range(20, 40))], n_sink=2, window_size=2
    )
    res = prefill(model, ids, press)
    assert res.cache_lengths == [10, 10]
    # row 1 asks for 20 positions with M = 10: coverage is the fraction that fits
    assert res.stats["oracle_coverage"] == pytest.approx(0.5)
    single = prefill(
        model,
        ids[:1],
        OraclePress(compression_ratio=0.9, indices=[10, 11], n_sink=2, window_size=2),
    )
    torch.testing.assert_close(get_layer_kv(res.cache, 1)[0][:1], get_layer_kv(single.cache, 1)[0])


def test_questions_decode_through_an_oracle_compressed_cache(make_model):
    """The oracle's cache is a normal ragged-decoding cache: questions append and are trimmed again."""
    model = make_model("llama", "sdpa", 4)
    ids = torch.randint(3, 500, (1, 120), generator=torch.Generator().manual_seed(3))
    res = prefill(model, ids, OraclePress(compression_ratio=0.5, indices=list(range(30, 60))))
    out = generate(model, res, torch.tensor([[7, 8]]), max_new_tokens=3)
    again = generate(model, res, torch.tensor([[7, 8]]), max_new_tokens=3)
    assert out.shape == (1, 3) and torch.equal(out, again)
    assert get_layer_kv(res.cache, 0)[0].shape[2] == res.cache_lengths[0] + 2 + 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"indices": [-1]}, ">= 0"),
        ({"indices": [1, [2]]}, "mix"),
        ({"n_sink": -1}, "n_sink"),
        ({"compression_ratio": 1.0}, "compression_ratio"),
    ],
)
def test_oracle_bad_config_names_what_is_wrong(kwargs, match):
    with pytest.raises(PressConfigError, match=match):
        OraclePress(**{"compression_ratio": 0.5, **kwargs})


def test_oracle_index_outside_the_context_or_wrong_row_count_raises(make_model, context_ids):
    model = make_model("llama", "sdpa", 4)
    with pytest.raises(PressConfigError, match="outside the context of 160"):
        prefill(model, context_ids, OraclePress(compression_ratio=0.5, indices=[5, 400]))
    with pytest.raises(PressConfigError, match="indices for 2 rows, the batch has 1"):
        prefill(model, context_ids, OraclePress(compression_ratio=0.5, indices=[[5], [6]]))


def test_random_press_is_seeded_keeps_sinks_window_and_budget(make_model, context_ids):
    model = make_model("llama", "sdpa", 4)
    n = context_ids.shape[1]
    a, res = _kept_positions(
        model, context_ids, RandomPress(compression_ratio=0.75, seed=1, window_size=8)
    )
    b, _ = _kept_positions(
        model, context_ids, RandomPress(compression_ratio=0.75, seed=1, window_size=8)
    )
    c, _ = _kept_positions(
        model, context_ids, RandomPress(compression_ratio=0.75, seed=2, window_size=8)
    )
    assert a == b and a != c
    m = round(0.25 * n)
    assert res.cache_lengths == [m] * 4
    protected = set(range(4)) | set(range(n - 8, n))
    for layer in a:
        for heads in layer:
            assert protected <= heads and len(heads) == m
    # layers and heads draw independently
    assert a[0][0] != a[1][0] or a[0][0] != a[0][1]


def test_random_press_rejects_a_non_int_seed():
    with pytest.raises(PressConfigError, match="seed must be an int"):
        RandomPress(compression_ratio=0.5, seed=1.5)


def test_random_is_a_registered_method():
    from structkv.presses import RandomPress
    from structkv.registry import PRESSES, make_press

    press = make_press("random", 0.1, window_size=8, seed=3)
    assert "random" in PRESSES and isinstance(press, RandomPress)
    assert (press.compression_ratio, press.window_size, press.seed) == (0.9, 8, 3)
