"""Deterministic seeding."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def torch_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator | None:
    """A seeded ``torch.Generator`` (or ``None`` when ``seed`` is ``None``)."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count after.

    Tiny models gain nothing from more threads; on a shared CPU, extra threads spin-wait and
    oversubscribe the cores, so tests, demos and benches of tiny models use one.
    """
    if n < 1:
        raise ValueError(f"thread count must be ≥ 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
