"""The one parser of the agent's output: the ``<sql>`` / ``<solution>`` text protocol and tool calls.

Used by the rewards (a whole completion, :func:`parse_completion`) and by the text-protocol rollout
(one generated turn, :func:`parse_turn`), so both apply the same rules (spec §2.1, §6):

* a block is ``<sql>QUERY</sql>`` (exploration) or ``<solution>QUERY</solution>`` (the answer);
* ``<observation>...</observation>`` is environment text and is ignored (a value in a result table
  cannot fake a tag);
* opening a block inside an open block (``<sql><sql>``, ``<solution><sql>``) is a format error;
  the outer block is dropped and the inner one is read;
* a block whose body contains any protocol tag (``<sql>``, ``<solution>``, ``<observation>``,
  ``<think>``, opening or closing) is a format error and is dropped (``<think>`` belongs outside
  the blocks);
* a closing tag without its opening tag, and a block left open at the end, are format errors;
* a whole completion needs exactly one non-empty ``<solution>`` block, after every ``<sql>`` block.

Nothing here raises on malformed input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ParsedCompletion", "parse_completion", "parse_turn", "scan_blocks"]

_TAG = re.compile(r"<(/?)(sql|solution)>", re.IGNORECASE)
_OBS = re.compile(r"<observation>.*?(</observation>|$)", re.IGNORECASE | re.DOTALL)
_ANY_TAG = re.compile(r"</?(sql|solution|observation|think)>", re.IGNORECASE)


@dataclass
class ParsedCompletion:
    """The queries of one completion, in order, and whether its format is valid.

    ``sql_turns`` are the exploratory queries; ``final_sql`` is the submitted answer (``None`` when
    missing). ``format_ok`` needs exactly one well-formed ``<solution>`` block, after every ``<sql>``
    block, with no tag inside any block.
    """

    sql_turns: list[str] = field(default_factory=list)
    final_sql: str | None = None
    format_ok: bool = False
    reason: str = ""


def scan_blocks(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(kind, body), ...], problems)``: the well-formed blocks of ``text`` in order, and every
    format problem found (module rules). Observations are removed first; bodies are stripped."""
    text = _OBS.sub(" ", text)  # observations are environment text, never the model's queries
    blocks: list[tuple[str, str]] = []
    problems: list[str] = []
    open_block: tuple[str, int] | None = None  # (tag name, start of its body)
    for m in _TAG.finditer(text):
        closing, name = m.group(1) == "/", m.group(2).lower()
        if not closing:
            if open_block is not None:
                problems.append(f"<{name}> opened inside <{open_block[0]}>")
            open_block = (name, m.end())  # nested opening: the outer block is dropped
            continue
        if open_block is None or open_block[0] != name:
            problems.append(f"unbalanced </{name}>")
            open_block = None
            continue
        body = text[open_block[1] : m.start()].strip()
        open_block = None
        if _ANY_TAG.search(body):
            problems.append(f"tag inside <{name}>")
            continue
        blocks.append((name, body))
    if open_block is not None:
        problems.append(f"unclosed <{open_block[0]}>")
    return blocks, problems


def parse_turn(text: str) -> tuple[str, str] | None:
    """``(kind, sql)`` of one generated turn, or ``None`` when the turn is malformed.

    ``text`` is the turn up to and including its first closing tag (what the rollout's stop strings
    leave). A valid turn holds exactly one block and no format problem (:func:`scan_blocks`).
    """
    blocks, problems = scan_blocks(text)
    if problems or len(blocks) != 1:
        return None
    return blocks[0]


def parse_completion(completion: Any) -> ParsedCompletion:
    """Parse a text-protocol string or a list of chat messages with tool calls. Never raises."""
    if isinstance(completion, list):
        return _parse_messages(completion)
    return _parse_text(str(completion or ""))


def _parse_text(text: str) -> ParsedCompletion:
    out = ParsedCompletion()
    blocks, problems = scan_blocks(text)
    n_solutions = 0
    for name, body in blocks:
        if name == "sql":
            if n_solutions:
                problems.append("<sql> after <solution>")
            out.sql_turns.append(body)
        else:
            n_solutions += 1
            if out.final_sql is None:
                out.final_sql = body
    if n_solutions == 0:
        problems.append("no <solution> block")
    elif n_solutions > 1:
        problems.append("several <solution> blocks")
    if out.final_sql is not None and not out.final_sql:
        problems.append("empty <solution>")
    out.format_ok = not problems
    out.reason = "; ".join(problems)
    return out


def _parse_messages(messages: list[Any]) -> ParsedCompletion:
    out = ParsedCompletion()
    texts: list[str] = []
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        calls = msg.get("tool_calls") or []
        if not calls and msg.get("content"):
            texts.append(str(msg["content"]))
        for call in calls:
            fn = call.get("function", call) if isinstance(call, dict) else {}
            args = fn.get("arguments") or {}
            if isinstance(args, str):
                args = {"query": args}
            query = str(args.get("query", "")).strip()
            if fn.get("name") == "execute_sql":
                out.sql_turns.append(query)
            elif fn.get("name") == "submit_answer" and out.final_sql is None:
                out.final_sql = query
    if out.final_sql is None and texts:  # a chat completion without tools: read its text tags
        return _parse_text("\n".join(texts))
    out.format_ok = bool(out.final_sql)
    out.reason = "" if out.format_ok else "no submit_answer call"
    return out
