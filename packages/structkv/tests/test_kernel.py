"""The Triton kernels equal the PyTorch references (CPU, TRITON_INTERPRET=1, in a subprocess)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from structkv.kernels import (
    triton_available,
    window_attention,
    window_indegree,
    window_indegree_torch,
)

_SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from structkv.kernels import full_indegree, window_indegree
from structkv.kernels.indegree_torch import full_indegree_torch, window_indegree_torch
g = torch.Generator().manual_seed(0)
out = []
cases = [(17, 4, 2, 9), (64, 4, 2, 56), (130, 4, 2, 122), (20, 4, 2, 0), (33, 4, 4, 25), (40, 8, 1, 32)]
for n, h, h_kv, first in cases:
    q = torch.randn(1, h, 8, 16, generator=g) * 2
    k = torch.randn(1, h_kv, n, 16, generator=g) * 2
    pos = torch.arange(first, first + 8)
    a = window_indegree(q, k, pos, 0.25, use_triton=True)
    r = window_indegree_torch(q, k, pos, 0.25)
    out.append([n, h, h_kv, (a[0] - r[0]).abs().max().item(), (a[1] - r[1]).abs().max().item()])
full = []
for n, h, h_kv in [(17, 4, 2), (37, 4, 4), (50, 8, 1)]:
    q = torch.randn(1, h, n, 16, generator=g) * 2
    k = torch.randn(1, h_kv, n, 16, generator=g) * 2
    a = full_indegree(q, k, 0.25, use_triton=True)
    r = full_indegree_torch(q, k, 0.25)
    full.append([n, h, h_kv, ((a - r).abs() / r.abs().clamp_min(1e-6)).max().item()])
print(json.dumps([out, full]))
"""


def _run_interpreted(script: str):
    """Run ``script`` in a fresh interpreter with TRITON_INTERPRET=1; its last stdout line, as JSON."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def interpreted():
    """Both kernel scripts in one fresh interpreter (one torch + triton import instead of two)."""
    if not triton_available():
        pytest.skip("triton is not installed")
    first = _SCRIPT.replace("print(json.dumps([out, full]))", "_FIRST = [out, full]")
    second = _SHAPES_SCRIPT.replace(
        "print(json.dumps([out, full]))",
        "print(json.dumps({'basic': _FIRST, 'shapes': [out, full]}))",
    )
    assert first != _SCRIPT and second != _SHAPES_SCRIPT
    return _run_interpreted(first + second)


def test_triton_kernel_matches_reference_under_interpreter(interpreted):
    rows, full = interpreted["basic"]
    assert len(rows) == 6  # non-multiple-of-block n, causal edge at the start, G = 1, 2 and 8
    for n, h, h_kv, d_indeg, d_ent in rows:
        assert d_indeg < 1e-5 and d_ent < 1e-5, (n, h, h_kv, d_indeg, d_ent)
    assert len(full) == 3  # all-query in-degree (centrality_queries="full"): relative error
    for n, h, h_kv, rel in full:
        assert rel < 1e-4, (n, h, h_kv, rel)


def test_reference_matches_dense_definition():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 5, 8, generator=g)
    k = torch.randn(2, 2, 12, 8, generator=g)
    pos = torch.arange(7, 12)
    indeg, ent = window_indegree_torch(q, k, pos, 0.3)
    a = window_attention(q, k, pos, 0.3)  # (B, H, w, n)
    # s^g(j) = 1/(G w) Σ_{h∈g} Σ_i a_ij ; heads 0,1 → kv head 0
    torch.testing.assert_close(indeg[:, 0], a[:, 0:2].sum(dim=(1, 2)) / 10)
    assert torch.allclose(indeg.sum(-1), torch.ones(2, 2))
    row = a[0, 3, 2]  # head 3, window row 2 at position 9
    h = -(row[row > 0] * row[row > 0].log()).sum() / torch.log(torch.tensor(10.0))
    assert 0 <= float(ent[0, 3]) <= 1
    assert a[0, 3, 2, 10:].abs().max() == 0  # causal
    assert float(h) <= 1


def test_use_triton_true_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, k = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 5, 4)
    if triton_available():
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            window_indegree(q, k, torch.arange(3, 5), 0.5, use_triton=True)
    else:
        with pytest.raises(ImportError, match="triton"):
            window_indegree(q, k, torch.arange(3, 5), 0.5, use_triton=True)
    # auto falls back to the reference
    a = window_indegree(q, k, torch.arange(3, 5), 0.5, use_triton="auto")
    torch.testing.assert_close(a[0], window_indegree_torch(q, k, torch.arange(3, 5), 0.5)[0])


_PRESS_SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from papercore.testing.builders import tiny_causal_lm
from structkv import StructKVPress, prefill
model = tiny_causal_lm("llama", num_hidden_layers=4)
ids = torch.randint(3, model.config.vocab_size, (1, 48), generator=torch.Generator().manual_seed(0))
res = {}
for use in (True, False):
    press = StructKVPress(compression_ratio=0.75, prefill_budget=0.6, window_size=4, kernel_size=3,
                          centrality_queries="full", use_triton=use)
    out = prefill(model, ids, press)
    keys = [layer.keys[0, 0, :, 0].tolist() for layer in out.cache.layers]  # which tokens each layer kept
    res[str(use)] = {"pivot": out.pivot_layer, "keys": keys, "lengths": out.cache_lengths,
                     "logits": out.last_logits[0, :5].tolist()}
print(json.dumps(res))
"""


@pytest.mark.slow  # ~40-70 s on a shared 2-core CPU; the kernels themselves are checked above
@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
def test_full_centrality_press_same_with_triton_under_interpreter():
    res = _run_interpreted(_PRESS_SCRIPT)
    tri, ref = res["True"], res["False"]
    assert tri["pivot"] == ref["pivot"] is not None
    assert tri["lengths"] == ref["lengths"] == [12] * 4  # 25% of 48 tokens in every layer
    for a, b in zip(tri["keys"], ref["keys"], strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert tri["logits"] == pytest.approx(ref["logits"], abs=1e-5)


_SHAPES_SCRIPT = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from structkv.kernels import full_indegree, window_indegree
from structkv.kernels.indegree_torch import full_indegree_torch, window_indegree_torch
g = torch.Generator().manual_seed(0)
out = []
# (name, B, H, H_kv, n, d, dtype, w): head dim 128, bf16, B > 1, n >> BLOCK_N (16)
cases = [
    ("d128-b2-noncontig", 2, 4, 2, 100, 128, torch.float32, 8),
    ("bf16-d128-b2-noncontig", 2, 4, 2, 90, 128, torch.bfloat16, 8),
    ("long-n", 1, 2, 1, 1000, 16, torch.float32, 8),
    ("bf16-long-n-b3", 3, 2, 2, 400, 32, torch.bfloat16, 4),
]
for name, b, h, h_kv, n, d, dtype, w in cases:
    # the window queries are a slice of a [B, n, H, d] tensor, as a hook sees them (non-contiguous)
    q_all = (torch.randn(b, n, h, d, generator=g) * 2).to(dtype).transpose(1, 2)
    q = q_all[:, :, n - w :]
    k = (torch.randn(b, n, h_kv, d, generator=g) * 2).to(dtype).transpose(1, 2)  # also strided
    assert not q.is_contiguous() and (h_kv == 1 or not k.is_contiguous())
    pos = torch.arange(n - w, n)
    scale = d ** -0.5
    a = window_indegree(q, k, pos, scale, use_triton=True)
    r = window_indegree_torch(q, k, pos, scale)
    assert a[0].shape == (b, h_kv, n) and a[1].shape == (b, h)
    # per-batch references: a batch row must not read another row's queries or keys
    per_b = max(
        (a[0][i] - window_indegree_torch(q[i : i + 1], k[i : i + 1], pos, scale)[0][0]).abs().max().item()
        for i in range(b)
    )
    out.append([name, (a[0] - r[0]).abs().max().item(), (a[1] - r[1]).abs().max().item(), per_b,
                a[0].sum(-1).sub(1).abs().max().item()])
full = []
for name, b, h, h_kv, n, d, dtype in [
    ("full-bf16-d128-b2", 2, 4, 2, 70, 128, torch.bfloat16),
    ("full-long-n", 1, 2, 2, 300, 16, torch.float32),
]:
    q = (torch.randn(b, n, h, d, generator=g) * 2).to(dtype).transpose(1, 2)
    k = (torch.randn(b, h_kv, n, d, generator=g) * 2).to(dtype)
    a = full_indegree(q, k, d ** -0.5, use_triton=True)
    r = full_indegree_torch(q, k, d ** -0.5)
    full.append([name, ((a - r).abs() / r.abs().clamp_min(1e-6)).max().item()])
print(json.dumps([out, full]))
"""


def test_triton_kernel_parity_gpu_shapes_under_interpreter(interpreted):
    """Head dim 128, bf16 inputs, B > 1, strided (non-contiguous) queries and keys, n ≫ BLOCK_N.

    The interpreter checks indexing and numerics only; a run on a real GPU is still owed (see
    bench/gpu_smoke.py), and code generation is covered by tests/test_triton_compile.py.
    """
    rows, full = interpreted["shapes"]
    assert [r[0] for r in rows] == [
        "d128-b2-noncontig",
        "bf16-d128-b2-noncontig",
        "long-n",
        "bf16-long-n-b3",
    ]
    for name, d_indeg, d_ent, d_batch, d_sum in rows:
        # both sides compute in float32 from the same (bf16-rounded) inputs
        assert d_indeg < 1e-5 and d_ent < 1e-5 and d_batch < 1e-5, (name, d_indeg, d_ent, d_batch)
        assert d_sum < 1e-4, (name, d_sum)  # each KV head's in-degree is a distribution
    for name, rel in full:
        assert rel < 1e-4, (name, rel)
