"""Window in-degree + entropy: a fused Triton kernel and the PyTorch reference it is checked against."""

from __future__ import annotations

import logging
import os
from typing import Literal

import torch

from structkv.kernels.indegree_torch import window_attention, window_indegree_torch

logger = logging.getLogger(__name__)
_warned = False

__all__ = ["triton_available", "window_attention", "window_indegree", "window_indegree_torch"]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


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
    elif use_triton == "auto":
        use = runnable and triton_available()
        if not use:
            if k.is_cuda and not _warned:
                logger.warning("triton not available: window in-degree falls back to PyTorch")
                _warned = True
            return window_indegree_torch(q_win, k, q_pos, scale)
    else:
        return window_indegree_torch(q_win, k, q_pos, scale)
    from structkv.kernels.indegree_triton import window_indegree_triton

    return window_indegree_triton(q_win, k, q_pos, scale)
