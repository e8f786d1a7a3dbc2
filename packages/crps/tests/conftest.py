from __future__ import annotations

import pytest

from crps_synth.toy import make_problems


@pytest.fixture
def toy_problems():
    """20 toy problems as pipeline dicts (id, problem, gold)."""
    return [p.to_dict(f"q{i}") for i, p in enumerate(make_problems(20, seed=3))]
