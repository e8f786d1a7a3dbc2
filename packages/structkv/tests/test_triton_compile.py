"""Every Triton kernel of ``structkv.kernels.indegree_triton`` compiles for a CUDA target, on a CPU.

The interpreter tests (``TRITON_INTERPRET=1``) never reach Triton's code generator, so they cannot see
compile-time errors such as a kernel reading a non-``constexpr`` global (issue 20: ``_NEG = -1.0e30``
crashed every scoring press on CUDA). Here the real wrappers (``window_indegree_triton`` for the window
path, ``full_indegree_triton`` for the all-query path) run on CPU tensors with their kernel launches
captured; each captured launch is specialised as Triton's launcher would specialise it (pointer dtype,
integers equal to 1 become constants, multiples of 16 get the divisibility hint) and compiled with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` down to PTX — no GPU needed.

It runs in a subprocess without ``TRITON_INTERPRET`` (under the interpreter ``@triton.jit`` gives
interpreted functions that are never compiled) and with a fresh Triton cache, so a cached kernel
cannot hide a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from structkv.kernels import triton_available

_SCRIPT = r"""
import json, sys
import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

import structkv.kernels.indegree_triton as m

DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int32: "i32",
          torch.int64: "i64"}
launches = []


class Capture:
    # Stands in for a @triton.jit kernel: records kernel[grid](*args, **constexprs) instead of launching.
    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            launches.append((self.fn, args, kwargs))
        return launch


def specialise(fn, args, kwargs):
    # (signature, constexprs, attrs) as Triton's launcher derives them from the argument values.
    values = dict(zip(fn.arg_names, args))
    values.update(kwargs)
    sig, const, attrs = {}, {}, {}
    for i, name in enumerate(fn.arg_names):
        v = values[name]
        if fn.params[i].is_constexpr:
            sig[name], const[name] = "constexpr", v
        elif isinstance(v, torch.Tensor):
            sig[name] = "*" + DTYPES[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, bool):
            sig[name] = "i1"
        elif isinstance(v, int):
            if v == 1:
                sig[name], const[name] = "constexpr", 1
            else:
                sig[name] = "i32" if -2**31 <= v < 2**31 else "i64"
                if v % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, float):
            sig[name] = "fp32"
        else:
            raise TypeError(f"{fn.__name__}: no Triton type for argument {name}={v!r}")
    return sig, const, attrs


jitted = {name: obj for name, obj in vars(m).items() if isinstance(obj, JITFunction)}
entry = {name for name, fn in jitted.items() if any(p.is_constexpr for p in fn.params)}
for name in entry:
    setattr(m, name, Capture(jitted[name]))

g = torch.Generator().manual_seed(0)
cases = []
for dtype in (torch.float32, torch.bfloat16):
    for d in (64, 128):
        # window path: 4 query heads over 2 KV heads, window 8, n = 100 (not a multiple of the block);
        # the window queries are a slice of a [B, n, H, d] tensor (non-contiguous, as a hook sees them)
        q_all = torch.randn(2, 100, 4, d, generator=g).to(dtype).transpose(1, 2)
        k = torch.randn(2, 2, 100, d, generator=g).to(dtype)
        cases.append(("window", dtype, d, lambda q=q_all[:, :, -8:], k=k:
                      m.window_indegree_triton(q, k, torch.arange(92, 100), 0.125)))
        # all-query path (centrality_queries="full"): every position is a query row
        q = torch.randn(1, 4, 48, d, generator=g).to(dtype)
        kf = torch.randn(1, 4, 48, d, generator=g).to(dtype)
        cases.append(("all-query", dtype, d, lambda q=q, k=kf: m.full_indegree_triton(q, k, 0.125)))

target = GPUTarget("cuda", 90, 32)
compiled, seen, results = {}, set(), []
for path, dtype, d, run in cases:
    launches.clear()
    run()
    assert launches, f"{path}: no kernel launch captured"
    for fn, args, kwargs in launches:
        sig, const, attrs = specialise(fn, args, kwargs)
        key = (fn.__name__, json.dumps(sig, sort_keys=True), json.dumps(const, sort_keys=True),
               json.dumps(sorted(map(str, attrs))))
        seen.add(fn.__name__)
        if key not in compiled:
            try:
                kernel = triton.compile(ASTSource(fn, sig, const, attrs), target=target)
                compiled[key] = ["ok", len(kernel.asm.get("ptx", ""))]
            except Exception as exc:  # report every failure, not only the first
                compiled[key] = ["error", f"{type(exc).__name__}: {exc}"[-1500:]]
        results.append([path, DTYPES[dtype], d, fn.__name__, *compiled[key]])
helpers = sorted(set(jitted) - entry)
uncalled = [h for h in helpers if not any(h + "(" in jitted[e].src for e in entry)]
print(json.dumps({"entry": sorted(entry), "seen": sorted(seen), "helpers": helpers,
                  "uncalled": uncalled, "results": results}))
"""


def _compile_all(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # a fresh cache: really compile
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not triton_available(), reason="triton is not installed")
def test_every_triton_kernel_compiles_for_cuda(tmp_path):
    out = _compile_all(tmp_path)
    assert out["entry"] == ["_colsum_kernel", "_lse_entropy_kernel"], out["entry"]
    # every kernel is launched by the wrappers, every helper is called from a kernel
    assert out["seen"] == out["entry"]
    assert out["uncalled"] == [], out["uncalled"]
    failures = [r for r in out["results"] if r[4] != "ok"]
    assert not failures, "\n\n".join(" ".join(map(str, r)) for r in failures)
    got = {(path, dtype, d, name) for path, dtype, d, name, *_ in out["results"]}
    for path in ("window", "all-query"):
        for dtype in ("fp32", "bf16"):
            for d in (64, 128):
                for name in out["entry"]:
                    assert (path, dtype, d, name) in got, (path, dtype, d, name)
    assert all(r[5] > 1000 for r in out["results"])  # real PTX came out
