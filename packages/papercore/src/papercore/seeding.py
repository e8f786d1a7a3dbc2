"""Deterministic seeding."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (all devices); optionally ask torch
    for deterministic kernels.

    It also sets ``PYTHONHASHSEED`` in ``os.environ``. That does **not** change string hashing (set
    iteration order) in the running interpreter, which is fixed at start-up; it only makes child
    processes started afterwards (``subprocess``, DataLoader workers with the ``spawn`` start
    method) hash reproducibly. For this process, set ``PYTHONHASHSEED`` before starting Python, or
    do not depend on the iteration order of sets of strings.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # for child processes only (see above)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


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
