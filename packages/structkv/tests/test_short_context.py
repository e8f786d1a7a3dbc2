"""Short contexts degrade instead of raising: a smaller window, or no compression, logged and in stats."""

from __future__ import annotations

import logging

import pytest
import torch

from structkv import FastKVPress, SnapKVPress, StructKVPress, prefill


def test_structkv_shrinks_the_window_when_the_budget_cannot_hold_it(make_model, caplog):
    model = make_model("llama", "sdpa")
    ids = torch.randint(3, 500, (1, 100), generator=torch.Generator().manual_seed(3))
    press = StructKVPress(compression_ratio=0.8, prefill_budget=0.6, window_size=32, n_sink=4)
    with caplog.at_level(logging.WARNING, logger="structkv"):
        res = prefill(model, ids, press)  # M = 20 < 4 + 32
    assert "window shrunk to 16" in caplog.text
    assert res.stats["window_size"] == 16 and "window shrunk" in res.stats["degraded"][0]
    assert res.stats["skipped"] is None and res.pivot_layer is not None
    assert res.cache_lengths == [20] * 8
    for layer in range(8):  # the (shrunk) window and the sinks are kept at every layer
        kept = res.kept_indices[layer][0, 0].tolist()
        assert kept[:4] == [0, 1, 2, 3] and kept[-16:] == list(range(84, 100))
    # the next call with a long context uses the configured window again
    long = torch.randint(3, 500, (1, 400), generator=torch.Generator().manual_seed(4))
    assert prefill(model, long, press).stats["window_size"] == 32


def test_structkv_skips_when_the_budget_cannot_hold_the_sinks(make_model, caplog):
    model = make_model("llama", "sdpa")
    ids = torch.randint(3, 500, (1, 40), generator=torch.Generator().manual_seed(5))
    press = StructKVPress(compression_ratio=0.9, prefill_budget=0.6, window_size=8, n_sink=4)
    full = prefill(model, ids)
    with caplog.at_level(logging.WARNING, logger="structkv"), pytest.warns(UserWarning):
        res = prefill(model, ids, press)  # M = 4 ≤ n_sink
    assert "cannot hold the 4 sink tokens" in res.stats["skipped"]
    assert "uncompressed" in caplog.text
    assert res.cache_lengths == [40] * 8 and res.stats["prefill_cost"] == 1.0
    assert res.pivot_layer is None
    torch.testing.assert_close(res.last_logits, full.last_logits)


def test_fastkv_shrinks_its_window_and_context_shorter_than_window_is_skipped(make_model):
    model = make_model("llama", "sdpa")
    ids = torch.randint(3, 500, (1, 60), generator=torch.Generator().manual_seed(6))
    res = prefill(model, ids, FastKVPress(compression_ratio=0.9, propagation_ratio=0.2))
    assert res.stats["window_size"] == 6 and res.cache_lengths == [6] * 8  # M = 6 < window 8
    with pytest.warns(UserWarning, match="too short"):
        tiny = prefill(model, ids[:, :20], SnapKVPress(compression_ratio=0.5))  # N ≤ window + 1
    assert tiny.stats["skipped"] == "context too short" and tiny.cache_lengths == [20] * 8
