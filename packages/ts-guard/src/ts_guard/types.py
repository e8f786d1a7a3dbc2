"""Data types: a tool call, one agent step, the guard's input and its verdict (spec §3)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ts_guard.errors import CandidateError, ToolCallParseError

__all__ = ["ToolCall", "Step", "GuardInput", "GuardVerdict", "Label", "parse_tool_call"]

Label = Literal["safe", "controversial", "unsafe"]


@dataclass
class ToolCall:
    """A tool call: ``name`` and JSON-serialisable ``arguments``; ``raw`` is the text it was parsed from."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise CandidateError(f"a tool call needs a non-empty string name, got {self.name!r}")
        if not isinstance(self.arguments, dict):
            raise ToolCallParseError(
                f"tool call arguments must be a dict, got {type(self.arguments).__name__}",
                raw=self.raw,
            )
        try:
            json.dumps(self.arguments)
        except (TypeError, ValueError) as e:
            raise ToolCallParseError(
                f"arguments of {self.name!r} are not JSON-serialisable: {e}", raw=self.raw
            ) from e

    def to_json(self) -> str:
        """``{"name": ..., "arguments": {...}}`` with sorted keys (stable across runs)."""
        return json.dumps(
            {"name": self.name, "arguments": self.arguments}, sort_keys=True, ensure_ascii=False
        )


def parse_tool_call(raw: str | dict[str, Any]) -> ToolCall:
    """A :class:`ToolCall` from ``{"name": ..., "arguments": {...}}`` (a dict or its JSON text).

    ``arguments`` may itself be a JSON string (OpenAI style). Invalid JSON raises
    :class:`~ts_guard.errors.ToolCallParseError` with the raw text; a dict without ``name`` raises
    :class:`~ts_guard.errors.CandidateError` (it is not a tool call).
    """
    text = raw if isinstance(raw, str) else None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ToolCallParseError(
                f"tool call is not valid JSON ({e.msg}): {text!r}", raw=text
            ) from e
    if not isinstance(raw, dict) or "name" not in raw:
        raise CandidateError(
            f"candidate must be a tool call {{'name': ..., 'arguments': ...}}, got {raw!r}"
        )
    args = raw.get("arguments", raw.get("args", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise ToolCallParseError(
                f"arguments of {raw['name']!r} are not valid JSON: {args!r}", raw=args
            ) from e
    if args is None:
        args = {}
    return ToolCall(name=raw["name"], arguments=args, raw=text)


@dataclass
class Step:
    """One past step of the agent: the executed ``action``, its ``observation`` and an optional ``thought``."""

    action: ToolCall
    observation: str | None = None
    thought: str | None = None


@dataclass
class GuardInput:
    """What the guard judges: user request ``u``, tool specs ``T``, history ``H_t`` and candidate ``a_t``."""

    user_request: str
    tools: list[dict[str, Any]]
    history: list[Step]
    candidate: ToolCall

    def __post_init__(self) -> None:
        if not isinstance(self.candidate, ToolCall):
            raise CandidateError(
                f"candidate must be a ToolCall, got {type(self.candidate).__name__} ({self.candidate!r:.80})"
            )
        if not isinstance(self.user_request, str):
            raise CandidateError(
                f"user_request must be a string, got {type(self.user_request).__name__}"
            )

    @property
    def unknown_tool(self) -> bool:
        """True when the candidate names a tool that is not in ``tools`` (judged anyway: a risk signal)."""
        names = {_tool_name(t) for t in self.tools}
        return bool(self.tools) and self.candidate.name not in names


def _tool_name(spec: dict[str, Any]) -> str | None:
    if "function" in spec and isinstance(spec["function"], dict):
        return spec["function"].get("name")
    return spec.get("name")


@dataclass
class GuardVerdict:
    """The guard's judgment of one candidate call.

    ``harmfulness`` ∈ {0.0, 0.5, 1.0}; ``label`` comes from the verdict rule (``official`` aggregation
    or ``rating``); ``score`` is the official aggregate 0.4·PI + 0.4·MUR + 0.1·[r=0.5] + 0.2·[r=1.0].
    ``format_ok=False`` marks an unparsable output (then the fields hold fail-closed values and ``error``
    says why).
    """

    label: Label
    harmfulness: float
    malicious_request: bool
    being_attacked: bool
    rationale: str = ""
    raw: str = ""
    format_ok: bool = True
    score: float | None = None
    unknown_tool: bool = False
    error: str | None = None

    @property
    def blocks(self) -> bool:
        """Whether TS-Flow blocks the call by default (unsafe or controversial, i.e. rating-style ≥ 0.5)."""
        return self.label != "safe"
