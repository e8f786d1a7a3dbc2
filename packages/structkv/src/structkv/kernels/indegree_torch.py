"""Pure-PyTorch window in-degree + entropy (spec §2.1, §2.3): the reference and the test oracle."""

from __future__ import annotations

import torch


def window_attention(
    q_win: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, scale: float
) -> torch.Tensor:
    """Causal softmax attention of the window queries over all keys, float32.

    q_win (B, H, w, d) post-RoPE window queries; k (B, H_kv, n, d) keys; q_pos (w,) index of each window
    query in the key sequence (key j is visible to query i iff j ≤ q_pos[i]). Returns (B, H, w, n).
    """
    h = q_win.shape[1]
    h_kv, n = k.shape[1], k.shape[2]
    g = h // h_kv
    kk = k.float().repeat_interleave(g, dim=1)
    logits = torch.matmul(q_win.float(), kk.transpose(-1, -2)) * scale
    mask = torch.arange(n, device=k.device)[None, :] > q_pos.to(k.device)[:, None]  # (w, n)
    logits = logits.masked_fill(mask, float("-inf"))
    return torch.softmax(logits, dim=-1)


def window_indegree_torch(
    q_win: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window in-degree per KV head and normalised row entropy per query head.

    indeg (B, H_kv, n) f32: s^g(j) = 1/(G·w) Σ_{h∈g} Σ_{i∈W} a_ij.
    entropy (B, H) f32: mean_i [−Σ_j a_ij log a_ij] / log(q_pos_i + 1) (a row with one visible key counts 0).
    """
    b, h, w, _ = q_win.shape
    h_kv, n = k.shape[1], k.shape[2]
    g = h // h_kv
    a = window_attention(q_win, k, q_pos, scale)
    indeg = a.sum(dim=2).view(b, h_kv, g, n).sum(dim=2) / (g * w)
    plogp = torch.where(a > 0, a * torch.log(a.clamp_min(1e-38)), torch.zeros_like(a))
    ent = -plogp.sum(dim=-1)  # (B, H, w)
    denom = torch.log(q_pos.to(k.device).float() + 1.0)
    norm = torch.where(denom > 0, ent / denom.clamp_min(1e-12), torch.zeros_like(ent))
    return indeg, norm.mean(dim=-1)


FULL_LOGITS_BUDGET_BYTES = 256 * 2**20  # one float32 logits block of full_indegree_torch


def full_block_rows(b: int, h: int, n: int) -> int:
    """Query rows per block so that one (B, H, rows, N) float32 logits block fits the budget."""
    return max(1, min(n, FULL_LOGITS_BUDGET_BYTES // (4 * b * h * max(1, n))))


def full_indegree_torch(
    q: torch.Tensor, k: torch.Tensor, scale: float, block: int | None = None
) -> torch.Tensor:
    """In-degree over *all* queries with causal normalisation (spec §2.1, ``centrality_queries="full"``).

    q (B, H, n, d) post-RoPE queries of every position; k (B, H_kv, n, d). Returns (B, H_kv, n) f32:
    s^g(j) = Σ_{h∈g} Σ_{i≥j} a_ij / (G·(n − j)) — every key is averaged over the queries that can see it,
    which removes the causal bias towards early tokens. O(n²·d) like attention.

    Memory: the keys are never repeated per query head (the G query heads of a KV group are one
    (G·rows, d) matmul against that group's keys), a block of ``block`` query rows only scores the keys
    it can see (≤ its last row), and mask, softmax and column sums work in place on that one logits block.
    ``block=None`` picks the rows so the block stays under ``FULL_LOGITS_BUDGET_BYTES``
    (:func:`full_block_rows`); the peak is then about that budget + float32 copies of q-block and k.
    """
    b, h, n, d = q.shape
    h_kv = k.shape[1]
    g = h // h_kv
    block = full_block_rows(b, h, n) if block is None else max(1, int(block))
    kf = k.float()  # no copy when k is already float32
    qg = q.view(b, h_kv, g, n, d)  # head h = group · G + member, as repeat_interleave pairs them
    cols = torch.zeros(b, h_kv, n, device=k.device, dtype=torch.float32)
    for s in range(0, n, block):
        e = min(n, s + block)
        m = e - s
        qb = qg[:, :, :, s:e].float().reshape(b, h_kv, g * m, d)
        logits = torch.matmul(qb, kf[:, :, :e].transpose(-1, -2))  # (B, H_kv, G·m, e)
        logits.mul_(scale)
        # causal: row s + r sees keys ≤ s + r; only the diagonal square [s, e) has hidden keys
        hidden = torch.ones(m, m, device=k.device, dtype=torch.bool).triu_(1)
        logits.view(b, h_kv, g, m, e)[..., s:e].masked_fill_(hidden, float("-inf"))
        logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()  # the diagonal keeps every max finite
        logits.div_(logits.sum(dim=-1, keepdim=True))
        cols[:, :, :e] += logits.sum(dim=2)
        del logits
    visible = (n - torch.arange(n, device=k.device)).to(torch.float32)  # queries i ≥ j
    return cols / (g * visible)
