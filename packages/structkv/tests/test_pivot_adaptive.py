"""The pivot adapts to the input: constructed attention structures give different pivots through the whole press.

A tiny Llama is wired by hand so that attention is content-based and layer-specific: every token's query is the
same vector, layer l's key reads feature f_l of the token, and ``o_proj`` / ``down_proj`` are zero, so the residual
stream stays the embedding at every layer. A token carrying feature f_l is then a hub of layer l (window attention
goes to it) and a filler everywhere else. q and k live in the slowest RoPE pair (rope_theta = 1e6), so positions
barely matter. Three contexts over the same weights:

* ``same``: 20 hubs of every layer → each layer selects the same tokens → stable from layer 1 → pivot l_min = 2;
* ``switch``: 20 hubs of layer 0, then 5 hubs shared by layers 1–7 → the selection changes once (layer 1) and then
  holds → pivot 3;
* ``drift``: 20 hubs of layer 0, then 5 new hubs at every layer → the selection never settles → l_max = 4.
"""

from __future__ import annotations

import pytest
import torch

from structkv import StructKVPress, prefill
from structkv.pivot import pivot_histogram

L, N, HID, D = 8, 200, 32, 16
# token ids: 1..30 filler, then hub tokens built per context (ids ≥ 32)
N_FILLER = 30


def _wired_model(hub_layers: list[tuple[frozenset[int], float]]):
    """Llama whose token 32+i is a hub of the layers ``hub_layers[i][0]`` with strength ``hub_layers[i][1]``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=32 + len(hub_layers),
        hidden_size=HID,
        intermediate_size=32,
        num_hidden_layers=L,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=D,
        max_position_embeddings=512,
        rope_theta=1e6,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    model.config._attn_implementation = "sdpa"
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        emb = torch.zeros(cfg.vocab_size, HID)
        emb[:, 0] = 1.0  # the shared "query" feature
        emb[:, 9:] = 0.1 * torch.randn(
            cfg.vocab_size, HID - 9, generator=g
        )  # content no head reads
        for i, (layers, strength) in enumerate(hub_layers):
            for layer in layers:
                emb[32 + i, 1 + layer] = strength
        model.model.embed_tokens.weight.copy_(emb)
        slow = D // 2 - 1  # the slowest rotary pair (dims slow, slow + D/2)
        for layer, block in enumerate(model.model.layers):
            att = block.self_attn
            att.q_proj.weight.zero_()
            for h in range(2):
                att.q_proj.weight[h * D + slow, 0] = 1.0
            att.k_proj.weight.zero_()
            att.k_proj.weight[slow, 1 + layer] = 6.0
            att.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
    return model


def _contexts():
    """Token ids of the three contexts and the hub table of the shared model."""
    hubs: list[tuple[frozenset[int], float]] = []

    def add(layers, count):
        start = len(hubs)
        for j in range(count):  # distinct strengths: no ties inside a group
            hubs.append((frozenset(layers), 1.0 + 0.03 * j))
        return list(range(32 + start, 32 + start + count))

    every = add(range(L), 20)
    first = add([0], 20)
    shared_later = add(range(1, L), 5)
    per_layer = [add([layer], 5) for layer in range(1, L)]
    g = torch.Generator().manual_seed(2)

    def place(tokens):
        ids = 1 + torch.randint(0, N_FILLER, (N,), generator=g)
        slots = (
            torch.randperm(N - 40, generator=g)[: len(tokens)] + 20
        )  # away from sinks and window
        ids[slots] = torch.tensor(tokens)
        return ids[None]

    ctx = {
        "same": place(every),
        "switch": place(first + shared_later),
        "drift": place(first + [t for group in per_layer for t in group]),
    }
    return _wired_model(hubs), ctx


@pytest.fixture(scope="module")
def wired():
    return _contexts()


def _press(metric):
    # |P| = 32 tokens = 4 sinks + 8 window + K = 20 scored tokens; M = 20
    return StructKVPress(
        compression_ratio=0.9,
        propagation_ratio=0.16,
        window_size=8,
        kernel_size=1,
        pivot_metric=metric,
    )


@pytest.mark.parametrize("metric", ["topk_jaccard", "js"])
def test_constructed_structures_get_different_pivots_through_the_press(wired, metric):
    model, ctx = wired
    results = {name: prefill(model, ids, _press(metric)) for name, ids in ctx.items()}
    assert {name: r.pivot_layer for name, r in results.items()} == {
        "same": 2,
        "switch": 3,
        "drift": 4,
    }
    assert [results[k].stats["pivot_reason"] for k in ("same", "switch", "drift")] == [
        "stable",
        "stable",
        "l_max",
    ]
    trace = results["switch"].stats["trace"]
    assert trace[1]["transition"] > results["switch"].stats["pivot_tau"] > trace[2]["transition"]
    # the compute reduction follows the detected pivot
    for r in results.values():
        piv = r.pivot_layer
        assert r.stats["tokens_per_layer"] == [N] * (piv + 1) + [32] * (L - piv - 1)
    assert pivot_histogram(results.values()) == {2: 1, 3: 1, 4: 1}


def test_trace_names_the_hubs_and_which_are_dormant_at_the_pivot(wired):
    from structkv.pivot import trace_context

    model, ctx = wired
    ids = ctx["switch"]  # layer 0 attends to 20 tokens, layers 1–7 to 5 other tokens
    tr = trace_context(model, ids, _press("topk_jaccard"), top_k=25)
    assert tr.pivot_layer == 3 and tr.pivot_reason == "stable" and len(tr.trace) == 4
    first_ids = set(range(52, 72))  # the layer-0 hubs (see _contexts)
    later_ids = set(range(72, 77))  # the hubs of layers 1–7
    top5, rest = tr.hubs[:5], tr.hubs[5:]
    assert {h["token_id"] for h in top5} == later_ids
    assert {h["token_id"] for h in rest} == first_ids
    assert all(h["pivot_rank"] <= 5 for h in top5)
    assert all(
        h["pivot_rank"] > 5 for h in rest
    )  # dormant at the pivot: only the centrality knows them
    for h in tr.hubs:
        assert ids[0, h["position"]] == h["token_id"] and len(h["per_layer"]) == 4
    assert [h["centrality"] for h in tr.hubs] == sorted(
        (h["centrality"] for h in tr.hubs), reverse=True
    )
    assert sum(h["centrality"] for h in tr.hubs) == pytest.approx(1.0, abs=0.05)
    assert all(h["propagated"] for h in top5)
