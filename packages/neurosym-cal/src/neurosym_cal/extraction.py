"""Code out of a chain-of-thought completion.

:func:`extract_code` never raises for a completion without code: it returns ``None`` and callers
count that sample as ``syntax`` (spec §6: never silently dropped).

Rules, in order:

1. Fenced blocks ```` ```python ```` / ```` ```py ```` / ```` ``` ```` (an unterminated last fence runs
   to the end). With an ``entry_point``, the **last** block that defines ``def <entry_point>(`` wins
   (CoT models draft first and answer last); otherwise the last ``python``-tagged block, else the
   last untagged block.
2. No fence: the text from the first line starting with ``def`` / ``import`` / ``from`` / ``class`` /
   ``@`` (top level) to the end, cut at the first following top-level line that is prose (does not
   parse); ``None`` when that leaves nothing that parses.

:func:`build_program` turns a HumanEval-style completion into a runnable program: the extracted
code when it defines the entry point, else the prompt followed by the completion (a body that
continues the prompt's signature), else the extracted code as is (which then fails with a
``NameError``: a wrong program, not a dropped one).
"""

from __future__ import annotations

import ast
import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_START = re.compile(r"^(def |async def |class |import |from \S+ import |@)")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.M) is not None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _raw_code(text: str) -> str | None:
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if _START.match(ln)), None)
    if start is None:
        return None
    end = len(lines)
    # cut trailing prose: shrink from the end until the text parses
    while end > start:
        chunk = "\n".join(lines[start:end]).rstrip()
        if chunk and _parses(chunk):
            return chunk + "\n"
        end -= 1
    return None


def extract_code(completion: str | None, entry_point: str | None = None) -> str | None:
    """The program in ``completion`` (see the module doc for the rules), or ``None`` if there is none."""
    if not completion or not isinstance(completion, str):
        return None
    blocks = [(lang, body) for lang, body in _fenced_blocks(completion) if body.strip()]
    code_blocks = [b for b in blocks if b[0] in ("python", "py", "python3", "")]
    if code_blocks:
        if entry_point:
            defining = [body for _, body in code_blocks if _defines(body, entry_point)]
            if defining:
                return defining[-1].rstrip() + "\n"
        tagged = [body for lang, body in code_blocks if lang]
        chosen = tagged[-1] if tagged else code_blocks[-1][1]
        return chosen.rstrip() + "\n"
    return _raw_code(completion)


def build_program(prompt: str, completion: str | None, entry_point: str) -> str | None:
    """A runnable program for a HumanEval-style problem (see the module doc), or ``None``."""
    code = extract_code(completion, entry_point)
    if code is not None and _defines(code, entry_point):
        # the prompt's imports (``from typing import List``) that the completion relies on
        imports = [
            ln
            for ln in prompt.splitlines()
            if (ln.startswith("import ") or ln.startswith("from ")) and ln not in code
        ]
        return "\n".join([*imports, code]) if imports else code
    if completion and completion.strip():
        body = completion if code is None else code
        first = next((ln for ln in body.splitlines() if ln.strip()), "")
        if first[:1] in (" ", "\t") and _defines(prompt, entry_point):
            candidate = prompt.rstrip("\n") + "\n" + body
            if _parses(candidate):
                return candidate
    return code


__all__ = ["build_program", "extract_code"]
