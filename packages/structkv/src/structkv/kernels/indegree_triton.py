"""Fused window in-degree + entropy in Triton (spec §2.7).

The w×n probability matrix is never materialised:

* pass 1, grid (B·H_kv, ⌈G·w / BLOCK_M⌉): each program owns BLOCK_M query rows (the G query heads of one KV
  head × the w window rows) and streams over key blocks keeping the online row max m, Σ exp(s − m) and
  Σ exp(s − m)·s. It writes lse_i and the row entropy H_i = lse_i − E_p[s] (no second sweep for entropy);
* pass 2, grid (B·H_kv, ⌈n / BLOCK_N⌉): each program owns one key block and loops over all G·w rows,
  accumulating the column sums Σ_i exp(s_ij − lse_i) into its own block (no atomics).

Causal limit: key j is visible to row i iff j ≤ q_pos[i]. Everything is float32. Runs on CUDA, or on
CPU under ``TRITON_INTERPRET=1`` (set before triton is imported), where the tests check it against
:func:`structkv.kernels.indegree_torch.window_indegree_torch`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# "minus infinity" of the online softmax. A kernel may only read globals that are tl.constexpr
# (Triton 3.x refuses a plain float at compile time; TRITON_INTERPRET=1 does not notice).
_NEG = tl.constexpr(-1.0e30)


@triton.jit
def _load_rows(Q, POS, b, kvh, rows, G, w, offs_d, d_ok, sqb, sqh, sqw, sqd):
    """The window query rows ``rows`` (G heads × w positions of KV head ``kvh``): q, positions, head, wi."""
    row_ok = rows < G * w
    head = kvh * G + rows // w
    wi = rows % w
    q = tl.load(
        Q + b * sqb + head[:, None] * sqh + wi[:, None] * sqw + offs_d[None, :] * sqd,
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    ).to(tl.float32)
    pos = tl.load(POS + wi, mask=row_ok, other=0)
    return q, pos, head, wi, row_ok


@triton.jit
def _load_cols(K, b, kvh, cols, n, offs_d, d_ok, skb, skh, skn, skd):
    """The key block ``cols`` of KV head ``kvh`` and its in-range mask."""
    col_ok = cols < n
    k = tl.load(
        K + b * skb + kvh * skh + cols[:, None] * skn + offs_d[None, :] * skd,
        mask=col_ok[:, None] & d_ok[None, :],
        other=0.0,
    ).to(tl.float32)
    return k, col_ok


@triton.jit
def _scores(q, k, scale, cols, col_ok, pos, row_ok):
    """Scaled scores and the causal visibility mask (key j visible to row i iff j <= q_pos[i])."""
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
    vis = col_ok[None, :] & (cols[None, :] <= pos[:, None]) & row_ok[:, None]
    return s, vis


@triton.jit
def _lse_entropy_kernel(
    Q,
    K,
    POS,
    LSE,
    ENT,
    n,
    w,
    G,
    H,
    H_kv,
    d,
    scale,
    sqb,
    sqh,
    sqw,
    sqd,
    skb,
    skh,
    skn,
    skd,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    b = (pid_bh // H_kv).to(tl.int64)  # int64: b · stride overflows int32 for B > 1 at 100k+ tokens
    kvh = pid_bh % H_kv
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < d
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    q, pos, head, wi, row_ok = _load_rows(
        Q, POS, b, kvh, rows, G, w, offs_d, d_ok, sqb, sqh, sqw, sqd
    )
    m = tl.full((BLOCK_M,), _NEG, tl.float32)
    l_sum = tl.zeros((BLOCK_M,), tl.float32)
    t_sum = tl.zeros((BLOCK_M,), tl.float32)
    for start in range(0, n, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        k, col_ok = _load_cols(K, b, kvh, cols, n, offs_d, d_ok, skb, skh, skn, skd)
        s, vis = _scores(q, k, scale, cols, col_ok, pos, row_ok)
        s = tl.where(vis, s, _NEG)
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.where(vis, tl.exp(s - m_new[:, None]), 0.0)
        l_sum = l_sum * alpha + tl.sum(p, axis=1)
        t_sum = t_sum * alpha + tl.sum(tl.where(vis, p * s, 0.0), axis=1)
        m = m_new
    l_safe = tl.where(l_sum > 0, l_sum, 1.0)
    lse = m + tl.log(l_safe)
    ent = lse - t_sum / l_safe
    out = b * H * w + head * w + wi
    tl.store(LSE + out, lse, mask=row_ok)
    tl.store(ENT + out, ent, mask=row_ok)


@triton.jit
def _colsum_kernel(
    Q,
    K,
    POS,
    LSE,
    OUT,
    n,
    w,
    G,
    H,
    H_kv,
    d,
    scale,
    sqb,
    sqh,
    sqw,
    sqd,
    skb,
    skh,
    skn,
    skd,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_n = tl.program_id(1)
    b = (pid_bh // H_kv).to(tl.int64)  # int64: b · stride overflows int32 for B > 1 at 100k+ tokens
    kvh = pid_bh % H_kv
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < d
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k, col_ok = _load_cols(K, b, kvh, cols, n, offs_d, d_ok, skb, skh, skn, skd)
    acc = tl.zeros((BLOCK_N,), tl.float32)
    for r0 in range(0, G * w, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        q, pos, head, wi, row_ok = _load_rows(
            Q, POS, b, kvh, rows, G, w, offs_d, d_ok, sqb, sqh, sqw, sqd
        )
        lse = tl.load(LSE + b * H * w + head * w + wi, mask=row_ok, other=0.0)
        s, vis = _scores(q, k, scale, cols, col_ok, pos, row_ok)
        p = tl.where(vis, tl.exp(s - lse[:, None]), 0.0)
        acc += tl.sum(p, axis=0)
    tl.store(OUT + pid_bh * n + cols, acc / (G * w), mask=col_ok)


def window_indegree_triton(
    q_win: torch.Tensor,
    k: torch.Tensor,
    q_pos: torch.Tensor,
    scale: float,
    block_m: int = 16,
    block_n: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as :func:`~structkv.kernels.indegree_torch.window_indegree_torch`."""
    b, h, w, d = q_win.shape
    h_kv, n = k.shape[1], k.shape[2]
    g = h // h_kv
    block_d = max(16, triton.next_power_of_2(d))
    pos = q_pos.to(device=k.device, dtype=torch.int32).contiguous()
    lse = torch.empty(b, h, w, device=k.device, dtype=torch.float32)
    ent = torch.empty_like(lse)
    indeg = torch.empty(b, h_kv, n, device=k.device, dtype=torch.float32)
    args = (
        n,
        w,
        g,
        h,
        h_kv,
        d,
        float(scale),
        *q_win.stride(),
        *k.stride(),
    )
    _lse_entropy_kernel[(b * h_kv, triton.cdiv(g * w, block_m))](
        q_win, k, pos, lse, ent, *args, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d
    )
    _colsum_kernel[(b * h_kv, triton.cdiv(n, block_n))](
        q_win, k, pos, lse, indeg, *args, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d
    )
    denom = torch.log(pos.float() + 1.0)
    norm = torch.where(denom > 0, ent / denom.clamp_min(1e-12), torch.zeros_like(ent))
    return indeg, norm.mean(dim=-1)


def full_indegree_triton(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Same contract as :func:`~structkv.kernels.indegree_torch.full_indegree_torch`.

    Every position is a query row of the window kernels (``q_pos = 0 … n−1``): they return the
    column sums over all rows / (G·n); rescaling by n / (n − j) gives the causal normalisation
    Σ_{h∈g} Σ_{i≥j} a_ij / (G·(n − j)). The row entropies of pass 1 come for free and are dropped.
    """
    n = k.shape[2]
    pos = torch.arange(n, device=k.device)
    indeg, _ = window_indegree_triton(q, k, pos, scale)
    return indeg * (n / (n - pos).to(torch.float32))
