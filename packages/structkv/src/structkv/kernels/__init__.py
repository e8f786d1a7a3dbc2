"""Window and all-query in-degree (+ entropy): fused Triton kernels and the PyTorch references they are checked against."""

from __future__ import annotations

import logging
import os
from typing import Literal

import torch

from structkv.kernels.indegree_torch import (
    full_indegree_torch,
    window_attention,
    window_indegree_torch,
)

logger = logging.getLogger(__name__)
_warned = False

__all__ = [
    "full_indegree",
    "full_indegree_torch",
    "triton_available",
    "window_attention",
    "window_indegree",
    "window_indegree_torch",
]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_wanted(k: torch.Tensor, use_triton: Literal["auto"] | bool) -> bool:
    """Whether to run the Triton kernel; raises when ``use_triton=True`` cannot be honoured."""
    global _warned
    runnable = k.is_cuda or _interpret()
    if use_triton is True:
        if not triton_available():
            raise ImportError("use_triton=True needs triton: pip install 'structkv[triton]'")
        if not runnable:
            raise RuntimeError(
                "use_triton=True on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported "
                "(or run on CUDA); use use_triton='auto' to fall back to PyTorch"
            )
        return True
    if use_triton == "auto":
        if runnable and triton_available():
            return True
        if k.is_cuda and not _warned:
            logger.warning("triton not available: the in-degree falls back to PyTorch")
            _warned = True
    return False


def window_indegree(
    q_win: torch.Tensor,
    k: torch.Tensor,
    q_pos: torch.Tensor,
    scale: float,
    use_triton: Literal["auto"] | bool = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch: Triton if asked/possible (CUDA, or CPU with ``TRITON_INTERPRET=1``), else the reference.

    Shapes as in :func:`window_indegree_torch`.
    """
    if not _triton_wanted(k, use_triton):
        return window_indegree_torch(q_win, k, q_pos, scale)
    from structkv.kernels.indegree_triton import window_indegree_triton

    return window_indegree_triton(q_win, k, q_pos, scale)


def full_indegree(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float,
    use_triton: Literal["auto"] | bool = "auto",
) -> torch.Tensor:
    """All-query in-degree with causal normalisation; dispatch as :func:`window_indegree`.

    Shapes as in :func:`~structkv.kernels.indegree_torch.full_indegree_torch`. The Triton path
    streams over key and query blocks, so it never holds an (n × n) block of attention.
    """
    if not _triton_wanted(k, use_triton):
        return full_indegree_torch(q, k, scale)
    from structkv.kernels.indegree_triton import full_indegree_triton

    return full_indegree_triton(q, k, scale)
