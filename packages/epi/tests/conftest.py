from __future__ import annotations

import pytest
import torch
from torch import nn


class MLP(nn.Module):
    """2-layer MLP used by the pure-torch tests."""

    def __init__(self, d_in: int = 8, d_hidden: int = 16, d_out: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def mlp() -> MLP:
    return MLP()


@pytest.fixture
def make_mlp():
    return MLP


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
