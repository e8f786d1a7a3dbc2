"""The sandbox worker process: ``python -m agentic_sql.sandbox_worker`` (process isolation).

Started by :class:`agentic_sql.executor.SQLiteExecutor` with :mod:`subprocess`, never with
:mod:`multiprocessing`: a ``spawn``/``forkserver`` start re-imports the caller's ``__main__``, which
breaks every plain script without an ``if __name__ == "__main__":`` guard. This module imports
nothing of the caller.

Protocol: JSON lines over stdin/stdout (ASCII, one object per line).

1. parent -> worker: ``{"limits": {...SandboxLimits fields...}, "memory_limit_mb": int | null}``
2. worker -> parent: ``{"ready": true}`` once the limits are set and sqlglot is imported
3. then, repeatedly, parent -> worker: ``{"path": str, "sql": str, "timeout_s": float,
   "max_rows": int | null}``; worker -> parent: one encoded :class:`ExecResult` (:func:`encode_result`)
4. end of stdin: the worker exits.

Anything the worker's code prints goes to stderr: stdout carries the protocol only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sqlite3
import sys
from dataclasses import asdict
from typing import Any

from agentic_sql.executor import (
    ExecResult,
    SandboxLimits,
    _ConnectionCache,
    _execute_local,
    _failure,
    validate_readonly,
)

__all__ = ["decode_limits", "decode_result", "encode_limits", "encode_result", "main"]


def _enc_cell(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"b": base64.b64encode(bytes(v)).decode("ascii")}
    return v


def _dec_cell(v: Any) -> Any:
    if isinstance(v, dict):
        return base64.b64decode(v["b"])
    return v


def encode_result(res: ExecResult) -> str:
    """One JSON line for ``res``; lossless for int / float (inf and NaN included) / str / bytes / None."""
    d = asdict(res)
    d["rows"] = [[_enc_cell(v) for v in row] for row in res.rows]
    return json.dumps(d, ensure_ascii=True, allow_nan=True)


def decode_result(line: str) -> ExecResult:
    """The :class:`ExecResult` encoded by :func:`encode_result`."""
    d = json.loads(line)
    d["rows"] = [tuple(_dec_cell(v) for v in row) for row in d["rows"]]
    return ExecResult(**d)


def encode_limits(limits: SandboxLimits, memory_limit_mb: int | None) -> str:
    """The start-up line sent to a new worker."""
    d = asdict(limits)
    d["denied_functions"] = sorted(limits.denied_functions)
    return json.dumps({"limits": d, "memory_limit_mb": memory_limit_mb}, ensure_ascii=True)


def decode_limits(line: str) -> tuple[SandboxLimits, int | None]:
    """The :class:`SandboxLimits` and memory limit of a start-up line."""
    d = json.loads(line)
    lim = dict(d["limits"])
    lim["denied_functions"] = frozenset(lim["denied_functions"])
    return SandboxLimits(**lim), d.get("memory_limit_mb")


def _set_memory_limit(memory_limit_mb: int) -> None:
    try:
        import resource

        lim = int(memory_limit_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    except (ImportError, ValueError, OSError) as e:  # pragma: no cover - platform dependent
        print(f"could not set the worker memory limit: {e}", file=sys.stderr)
    # SQLite's own heap cap (process-wide, so only in a worker): allocations beyond it fail with
    # "out of memory" instead of the process dying; temp tables / sorters stay in that memory
    with contextlib.suppress(sqlite3.Error):
        probe = sqlite3.connect(":memory:")
        probe.execute(f"PRAGMA hard_heap_limit = {int(memory_limit_mb) * 1024 * 1024 // 2}")
        probe.close()


def main() -> int:
    """Serve queries until stdin closes (see the module docstring for the protocol)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "w", encoding="ascii", newline="\n")
    os.dup2(2, 1)  # stray prints (ours or a library's) must not corrupt the protocol
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    first = inp.readline()
    if not first:
        return 1
    limits, memory_limit_mb = decode_limits(first.decode("utf-8"))
    if memory_limit_mb:
        _set_memory_limit(memory_limit_mb)
    cache = _ConnectionCache(limits, temp_store_memory=bool(memory_limit_mb))
    validate_readonly("SELECT 1")  # import sqlglot before announcing readiness
    out.write('{"ready": true}\n')
    out.flush()
    try:
        for raw in inp:
            try:
                msg = json.loads(raw.decode("utf-8"))
                res = _execute_local(
                    cache, msg["path"], msg["sql"], float(msg["timeout_s"]), msg["max_rows"]
                )
            except MemoryError:
                res = _failure("out of memory while running the query", "memory")
            except Exception as e:  # never let a worker die silently
                res = _failure(f"{type(e).__name__}: {e}", "crash")
            try:
                line = encode_result(res)
            except MemoryError:
                line = encode_result(_failure("out of memory while returning the result", "memory"))
            except Exception as e:  # pragma: no cover - defensive
                line = encode_result(_failure(f"cannot return the result: {e}", "crash"))
            out.write(line + "\n")
            out.flush()
    except (BrokenPipeError, OSError):  # pragma: no cover - parent went away
        pass
    finally:
        cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
