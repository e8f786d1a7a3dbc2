"""Shared test helpers: a scripted generation backend (implements papercore's GenerationBackend protocol)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from papercore.generation import Completion, SamplingConfig


class ScriptedBackend:
    """A backend whose completion text is ``reply(prompt, config, sample_index)``; records every call."""

    name = "scripted"

    def __init__(self, reply: Callable[[str, SamplingConfig, int], str]):
        self.reply = reply
        self.calls: list[tuple[int, SamplingConfig]] = []

    def generate(
        self, prompts: Sequence[str], config: SamplingConfig | None = None
    ) -> list[list[Completion]]:
        config = config or SamplingConfig()
        self.calls.append((len(prompts), config))
        out = []
        for p in prompts:
            texts = [self.reply(p, config, k) for k in range(config.n)]
            out.append(
                [Completion(text=t, token_ids=list(range(len(t.split()) + 1))) for t in texts]
            )
        return out


@pytest.fixture
def scripted():
    return ScriptedBackend
