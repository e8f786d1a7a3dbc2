"""Answer verification on HF ``math-verify`` (spec 2.6): ``\\boxed{}`` extraction + symbolic equivalence.

* A prediction counts only through its **last** ``\\boxed{…}`` (nested braces allowed): an unboxed
  final answer is not accepted (``extract`` returns None).
* Equivalence is ``math_verify.verify(parse(gold), parse(pred))``: ``\\boxed{1/2}`` ≡ ``0.5`` ≡
  ``\\frac{1}{2}``, ``2^{10}`` ≡ ``1024``.
* **Thread-safe.** math-verify's own timeouts use ``signal.alarm``, which raises "signal only works in
  main thread" off the main thread; they are switched off (``parsing_timeout=None``,
  ``timeout_seconds=None``) and each check runs in a daemon thread joined with our own time bound
  (``timeout`` seconds). A check that overruns counts as *not equivalent*, is logged, and is counted
  in :attr:`MathVerifier.timeouts` (the thread is left to finish on its own).
* A gold answer math-verify cannot parse → a warning (once per gold) and a normalized string match.

math-verify is imported on first use (it costs seconds to import).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)


@runtime_checkable
class Verifier(Protocol):
    """Extracts a final answer from a solution and compares answers."""

    def extract(self, text: str) -> str | None: ...

    def equivalent(self, pred: str, gold: str) -> bool: ...


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` in ``text`` (balanced braces), or None.

    ``"so \\boxed{\\frac{1}{2}}."`` → ``"\\frac{1}{2}"``; an unclosed box gives None.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    start = text.rfind("\\boxed{")
    while start >= 0:
        i = start + len("\\boxed{")
        depth = 1
        j = i
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        if depth == 0:
            inner = text[i : j - 1].strip()
            return inner or None
        start = text.rfind("\\boxed{", 0, start)
    return None


def _normalize(ans: str) -> str:
    s = "".join(ans.split()).strip("$").rstrip(".")
    for a, b in (
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("dfrac", "frac"),
        ("tfrac", "frac"),
    ):
        s = s.replace(a, b)
    return s


class MathVerifier:
    """math-verify equivalence with ``\\boxed{}`` extraction (see the module doc).

    Args:
        timeout: seconds allowed for one parse + verify (our own bound, valid in any thread).
    """

    def __init__(self, timeout: float = 5.0):
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.timeout = timeout
        self.timeouts = 0
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], bool] = {}

    def extract(self, text: str) -> str | None:
        """The last boxed answer of ``text`` (None when there is no ``\\boxed{}``)."""
        return extract_boxed(text)

    def gold_parses(self, gold: str) -> bool:
        """Whether math-verify parses ``gold`` (else :meth:`equivalent` falls back to string match)."""
        import math_verify  # noqa: F401  (slow first import outside the time bound)

        got = self._bounded(lambda: _parse(gold), default=[])
        return any(not isinstance(x, str) for x in got)

    def equivalent(self, pred: str, gold: str) -> bool:
        """``pred`` ≡ ``gold`` (both bare answers, e.g. ``"1/2"`` and ``"0.5"``)."""
        if not isinstance(pred, str) or not isinstance(gold, str):
            raise TypeError(
                f"pred and gold must be strings, got {type(pred).__name__} and {type(gold).__name__}"
            )
        if not gold.strip():
            raise ValueError("gold answer is empty; expected the reference answer")
        if not pred.strip():
            return False
        key = (pred.strip(), gold.strip())
        if key in self._cache:
            return self._cache[key]

        from math_verify import verify  # the slow first import stays outside the time bound

        def check() -> bool:
            g = _parse(gold)
            if not any(not isinstance(x, str) for x in g):  # no sympy object: not parsable
                self._warn_gold(gold)
                return _normalize(pred) == _normalize(gold)
            p = _parse(pred)
            if not p:
                return False
            return bool(verify(g, p, timeout_seconds=None))

        res = bool(self._bounded(check, default=False))
        self._cache[key] = res  # a timed-out check is cached as False too: it would time out again
        return res

    def verify_text(self, text: str, gold: str) -> tuple[str | None, bool]:
        """(boxed answer of ``text``, whether it equals ``gold``); no box → ``(None, False)``."""
        ans = self.extract(text)
        return ans, (ans is not None and self.equivalent(ans, gold))

    def _warn_gold(self, gold: str) -> None:
        with self._lock:
            if gold not in self._warned:
                self._warned.add(gold)
                logger.warning(
                    "gold answer %r is not parsable by math-verify; falling back to string match",
                    gold,
                )

    def _bounded(self, fn: Any, default: Any) -> Any:
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except Exception as e:  # a math-verify/sympy failure on odd input = not equivalent
                box["error"] = e

        t = threading.Thread(target=run, daemon=True, name="crps-verify")
        t.start()
        t.join(self.timeout)
        if t.is_alive():
            with self._lock:
                self.timeouts += 1
            logger.warning("answer check exceeded %.1fs; counted as not equivalent", self.timeout)
            return default
        if "error" in box:
            logger.debug("math-verify failed: %s", box["error"])
            return default
        return box.get("value", default)


class _NoTimeoutNotice(logging.Filter):
    """Drops math-verify's per-call "Timeout is disabled" warning: we bound the time ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


_NOTICE = _NoTimeoutNotice()
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NOTICE)


def _parse(ans: str) -> list[Any]:
    from math_verify import parse

    s = ans.strip()
    if not (s.startswith("$") or s.startswith("\\(")):
        s = f"${s}$"
    return parse(s, parsing_timeout=None)


class StringVerifier:
    """Exact match after whitespace / ``$`` normalization (for tasks whose answers are plain tokens)."""

    def extract(self, text: str) -> str | None:
        return extract_boxed(text)

    def equivalent(self, pred: str, gold: str) -> bool:
        return _normalize(pred) == _normalize(gold)
