"""Model adapters on papercore's generation backends (transformers / vLLM / OpenAI-compatible server).

* :class:`BackendStepGenerator` — the explorer of :class:`~crps_synth.mcts.MCTS` on any backend:
  the prompt is the problem, an instruction, the steps so far as ``Step k: …`` lines and an open
  ``Step n:``; ``propose`` samples n continuations (one step each, cut at the next ``\\nStep``),
  ``rollout`` samples one continuation to the end.
* :class:`BackendChatLLM` — the analyst / synthesizer: a system + user chat through the backend.
* :class:`ScriptedChatLLM` — a deterministic analyst for tests and offline runs: a function of
  ``(system, user)``, so answers never depend on call order (resumed runs match).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from crps_synth.steps import format_steps, segment_steps
from papercore.generation import GenerationBackend, SamplingConfig, make_backend

#: the instruction after the problem (released ``crps/training/dataset.py`` uses the same sentence)
STEP_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@runtime_checkable
class ChatLLM(Protocol):
    """An instruction-following model: one reply to a system + user message."""

    def chat(self, system: str, user: str, *, temperature: float, max_tokens: int) -> str: ...


def explorer_prompt(problem: str, prefix: list[str]) -> str:
    """``problem``, the instruction, the steps so far and an open ``Step n:`` line."""
    head = f"{problem.strip()}\n{STEP_INSTRUCTION}\n"
    done = format_steps(prefix)
    return head + (done + "\n" if done else "") + f"Step {len(prefix) + 1}:"


class BackendStepGenerator:
    """Explorer on a papercore backend (see the module doc).

    Args:
        backend: a ``GenerationBackend`` (``papercore.generation.make_backend(...)``).
        step_max_tokens: budget of one proposed step.
        rollout_max_tokens: budget of one rollout to the end.
        prompt_fn: ``(problem, prefix) -> prompt``; default :func:`explorer_prompt`.
    """

    def __init__(
        self,
        backend: GenerationBackend,
        *,
        step_max_tokens: int = 256,
        rollout_max_tokens: int = 1024,
        prompt_fn: Callable[[str, list[str]], str] = explorer_prompt,
    ):
        if not callable(getattr(backend, "generate", None)):
            raise TypeError(f"backend must have a generate() method, got {type(backend).__name__}")
        self.backend = backend
        self.step_max_tokens = step_max_tokens
        self.rollout_max_tokens = rollout_max_tokens
        self.prompt_fn = prompt_fn

    def propose(
        self,
        problem: str,
        prefix: list[str],
        n: int,
        temperature: float,
        *,
        seed: int | None = None,
    ) -> list[str]:
        cfg = SamplingConfig(
            n=n,
            temperature=temperature,
            max_new_tokens=self.step_max_tokens,
            seed=seed,
            stop=("\nStep",),
        )
        outs = self.backend.generate([self.prompt_fn(problem, prefix)], cfg)[0]
        return [c.text.strip() for c in outs]

    def rollout(
        self, problem: str, prefix: list[str], temperature: float, *, seed: int | None = None
    ) -> list[str]:
        cfg = SamplingConfig(
            n=1, temperature=temperature, max_new_tokens=self.rollout_max_tokens, seed=seed
        )
        text = self.backend.generate([self.prompt_fn(problem, prefix)], cfg)[0][0].text
        return segment_steps(text)


class BackendChatLLM:
    """:class:`ChatLLM` on a papercore backend: ``[system, user]`` messages, one completion.

    Calls are serialised with a lock for the in-process transformers backend (one model shared by
    the analyzer's worker threads); HTTP backends run concurrently.
    """

    def __init__(
        self, backend: GenerationBackend, *, seed: int | None = 0, serialize: bool | None = None
    ):
        if not callable(getattr(backend, "generate", None)):
            raise TypeError(f"backend must have a generate() method, got {type(backend).__name__}")
        self.backend = backend
        self.seed = seed
        serialize = (
            getattr(backend, "name", "") == "transformers" if serialize is None else serialize
        )
        self._lock: Any = threading.Lock() if serialize else None

    def chat(self, system: str, user: str, *, temperature: float, max_tokens: int) -> str:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        cfg = SamplingConfig(
            n=1, temperature=temperature, max_new_tokens=max_tokens, seed=self.seed
        )
        if self._lock is None:
            return self.backend.generate([msgs], cfg)[0][0].text
        with self._lock:
            return self.backend.generate([msgs], cfg)[0][0].text


def make_chat_llm(backend: str, **kwargs: Any) -> BackendChatLLM:
    """``BackendChatLLM(make_backend(backend, **kwargs))``: ``"openai"`` (``base_url=, model=``) or
    ``"transformers"`` (``model=`` a local path)."""
    return BackendChatLLM(make_backend(backend, **kwargs))


class ScriptedChatLLM:
    """A deterministic :class:`ChatLLM`: ``responder(system, user) -> str``, or a mapping from a
    substring of the user message to the reply (first match in insertion order; ``default`` else).

    ``calls`` counts the calls (thread-safe).
    """

    def __init__(
        self,
        responder: Callable[[str, str], str] | Mapping[str, str],
        *,
        default: str | None = None,
    ):
        if not callable(responder) and not isinstance(responder, Mapping):
            raise TypeError(
                f"responder must be a callable (system, user) -> str or a mapping, got {type(responder).__name__}"
            )
        self.responder = responder
        self.default = default
        self.calls = 0
        self._lock = threading.Lock()

    def chat(
        self, system: str, user: str, *, temperature: float = 0.0, max_tokens: int = 1024
    ) -> str:
        with self._lock:
            self.calls += 1
        if callable(self.responder):
            return self.responder(system, user)
        for key, reply in self.responder.items():
            if key in user:
                return reply
        if self.default is None:
            raise KeyError(
                f"ScriptedChatLLM has no reply for a user message starting {user[:80]!r}"
            )
        return self.default
