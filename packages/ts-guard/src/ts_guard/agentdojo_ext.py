"""TS-Flow inside AgentDojo (optional extra ``ts-guard[agentdojo]``, agentdojo ≥ 0.1.35).

:class:`GuardedToolsExecutor` is a ``ToolsExecutor`` that judges every tool call of the last assistant
message before it runs. A blocked call is never executed: in ``"feedback"`` mode its tool-result message
carries the guard's feedback (so the LLM element re-plans); in ``"abort"`` mode the episode ends with
AgentDojo's ``AbortAgentError``. Guard decisions are returned in ``extra_args["ts_guard"]`` (a new dict;
``extra_args`` is never mutated in place).

:class:`ScriptedAgent` is a stochastic scripted "LLM" element for offline benches: it follows the user
task's ground-truth calls, follows an injected instruction with probability ``q_follow`` once it has
seen one, and after guard feedback returns to the user task with probability ``q_recover``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from typing import Any

from ts_guard.errors import ConfigError
from ts_guard.flow import FeedbackStyle, GuardGate, Mode, OnParseError, feedback_message
from ts_guard.types import GuardInput, Step, ToolCall

try:
    from agentdojo.agent_pipeline.base_pipeline_element import BasePipelineElement
    from agentdojo.agent_pipeline.errors import AbortAgentError
    from agentdojo.agent_pipeline.tool_execution import ToolsExecutor
    from agentdojo.functions_runtime import EmptyEnv, Env, FunctionCall, FunctionsRuntime
    from agentdojo.types import (
        ChatAssistantMessage,
        ChatToolResultMessage,
        text_content_block_from_string,
    )
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ts_guard.agentdojo_ext needs the optional extra: pip install 'ts-guard[agentdojo]'"
    ) from e

logger = logging.getLogger(__name__)

__all__ = [
    "GuardedToolsExecutor",
    "ScriptedAgent",
    "tool_specs",
    "history_from_messages",
    "message_text",
    "FEEDBACK_PREFIX",
]

FEEDBACK_PREFIX = "[TS-Guard]"


def message_text(msg: Any) -> str:
    """The text of an AgentDojo message (content blocks or a string)."""
    content = msg.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(b.get("content", "") or "" for b in content if isinstance(b, dict))


def tool_specs(runtime: FunctionsRuntime) -> list[dict[str, Any]]:
    """The runtime's functions as JSON tool specs (name, description, parameters schema)."""
    return [
        {
            "name": f.name,
            "description": f.description,
            "parameters": f.parameters.model_json_schema(),
        }
        for f in runtime.functions.values()
    ]


def _call(fc: FunctionCall) -> ToolCall:
    return ToolCall(name=fc.function, arguments=json.loads(json.dumps(dict(fc.args), default=str)))


def history_from_messages(messages: Sequence[Any]) -> list[Step]:
    """Executed (or blocked) calls and their results, oldest first, from an AgentDojo message list."""
    steps: list[Step] = []
    for msg in messages:
        if msg["role"] == "tool" and msg.get("tool_call") is not None:
            obs = message_text(msg) or (msg.get("error") or "")
            steps.append(Step(_call(msg["tool_call"]), obs))
    return steps


def user_request(messages: Sequence[Any], query: str) -> str:
    for msg in messages:
        if msg["role"] == "user":
            return message_text(msg)
    return query


class GuardedToolsExecutor(ToolsExecutor):
    """``ToolsExecutor`` with a pre-execution guard (module docstring)."""

    def __init__(
        self,
        guard: Any,
        *,
        mode: Mode = "feedback",
        feedback: FeedbackStyle = "rationale",
        block_threshold: float = 0.5,
        on_parse_error: OnParseError = "unsafe",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("none", "abort", "feedback"):
            raise ConfigError(f"mode must be 'none', 'abort' or 'feedback', got {mode!r}")
        self.mode, self.feedback = mode, feedback
        self.gate = GuardGate(guard, block_threshold, on_parse_error)

    def query(
        self,
        query: str,
        runtime: FunctionsRuntime,
        env: Env = EmptyEnv(),
        messages: Sequence[Any] = [],
        extra_args: dict | None = None,
    ) -> tuple[str, FunctionsRuntime, Env, Sequence[Any], dict]:
        if extra_args is None:
            extra_args = {}
        if (
            self.mode == "none"
            or not messages
            or messages[-1]["role"] != "assistant"
            or not messages[-1]["tool_calls"]
        ):
            return super().query(query, runtime, env, messages, extra_args)
        last = messages[-1]
        request, specs = user_request(messages, query), tool_specs(runtime)
        history = history_from_messages(messages)
        log = list(extra_args.get("ts_guard", []))
        results: list[Any] = []
        for tc in last["tool_calls"]:
            call = _call(tc)
            verdict, blocked = self.gate.decide(GuardInput(request, specs, history, call))
            log.append(
                {
                    "call": call.to_json(),
                    "label": verdict.label,
                    "blocked": blocked,
                    "format_ok": verdict.format_ok,
                }
            )
            if blocked:
                text = feedback_message(verdict, call, self.feedback)
                msg = ChatToolResultMessage(
                    role="tool",
                    content=[text_content_block_from_string(text)],
                    tool_call_id=tc.id,
                    tool_call=tc,
                    error=None,
                )
                if self.mode == "abort":
                    stop = ChatAssistantMessage(
                        role="assistant",
                        content=[
                            text_content_block_from_string(
                                "The guard blocked a tool call; the task was stopped."
                            )
                        ],
                        tool_calls=None,
                    )
                    raise AbortAgentError(
                        f"ts-guard blocked {call.name}", [*messages, *results, msg, stop], env
                    )
                results.append(msg)
            else:
                _, _, env, out, _ = super().query(
                    query, runtime, env, [*messages[:-1], {**last, "tool_calls": [tc]}], extra_args
                )
                results += list(out[len(messages) :])
            history.append(Step(call, message_text(results[-1])))
        return query, runtime, env, [*messages, *results], {**extra_args, "ts_guard": log}


class ScriptedAgent(BasePipelineElement):
    """A seeded stochastic scripted agent (an AgentDojo "LLM" element; module docstring).

    ``user_calls`` / ``injection_calls`` are the user and injection tasks' ground-truth calls;
    ``final_output`` is the user task's ground-truth answer. ``max_retries`` caps how often a blocked
    injected call is retried before the agent gives up on it.
    """

    name = "scripted-agent"

    def __init__(
        self,
        user_calls: Sequence[FunctionCall],
        injection_calls: Sequence[FunctionCall] = (),
        final_output: str = "",
        *,
        q_follow: float = 0.6,
        q_recover: float = 0.8,
        seed: int = 0,
        injection_marker: str = "<information>",
    ) -> None:
        self.queue = list(user_calls)
        self.injection_calls = list(injection_calls)
        self.final_output = final_output
        self.q_follow, self.q_recover = q_follow, q_recover
        self.rng = random.Random(seed)
        self.marker = injection_marker.lower()
        self.saw_injection = False
        self.last_call: FunctionCall | None = None
        self.following = False
        self.seen_messages: list[Any] = []
        self._n = 0

    def _next_id(self) -> str:
        self._n += 1
        return f"call_{self._n}"

    def _emit(self, fc: FunctionCall | None, messages: Sequence[Any]) -> list[Any]:
        if fc is None:
            msg = ChatAssistantMessage(
                role="assistant",
                content=[text_content_block_from_string(self.final_output)],
                tool_calls=None,
            )
        else:
            fc = FunctionCall(function=fc.function, args=dict(fc.args), id=self._next_id())
            self.last_call = fc
            msg = ChatAssistantMessage(
                role="assistant", content=[text_content_block_from_string("")], tool_calls=[fc]
            )
        return [*messages, msg]

    def query(
        self,
        query: str,
        runtime: FunctionsRuntime,
        env: Env = EmptyEnv(),
        messages: Sequence[Any] = [],
        extra_args: dict | None = None,
    ) -> tuple[str, FunctionsRuntime, Env, Sequence[Any], dict]:
        if extra_args is None:
            extra_args = {}
        self.seen_messages = list(messages)
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "tool":
            text = message_text(last)
            if text.startswith(FEEDBACK_PREFIX):
                if (
                    self.following
                    and self.rng.random() >= self.q_recover
                    and self.last_call is not None
                ):
                    return (
                        query,
                        runtime,
                        env,
                        self._emit(self.last_call, messages),
                        extra_args,
                    )  # retry it
                if (
                    self.following
                ):  # recover: drop the rest of the injected plan, continue the user task
                    self.queue = [c for c in self.queue if c not in self.injection_calls]
                self.following = False
            elif not self.saw_injection and self.marker in text.lower():
                self.saw_injection = True
                if self.injection_calls and self.rng.random() < self.q_follow:
                    self.following = True
                    self.queue = [*self.injection_calls, *self.queue]
        if self.following and self.queue and self.queue[0] not in self.injection_calls:
            self.following = False  # the injected plan is done
        nxt = self.queue.pop(0) if self.queue else None
        return query, runtime, env, self._emit(nxt, messages), extra_args
