"""Errors raised by agentic-sql. Each one says what was expected and what was got.

All subclass :class:`papercore.errors.PapercoreError` (so ``papercore.cli.clean_errors`` prints them as one
line) and a builtin (``ValueError`` / ``FileNotFoundError``) so callers can catch them generically.
"""

from __future__ import annotations

import os

from papercore.errors import MalformedInputError, PapercoreError

__all__ = [
    "AgenticSQLError",
    "DatabaseNotFoundError",
    "DistributedSetupError",
    "GoldQueryError",
    "MalformedDatasetError",
    "SQLParseError",
    "SandboxWorkerError",
    "UnsafeSQLError",
    "UnsafeOutputDirError",
]


class AgenticSQLError(PapercoreError):
    """Base class of every error agentic-sql raises on purpose."""


class UnsafeSQLError(AgenticSQLError, ValueError):
    """A query that is not exactly one read-only statement (a write, DDL, PRAGMA, ATTACH, several statements,
    a denied function such as ``load_extension``). The executor turns it into an error observation."""


class SQLParseError(AgenticSQLError, ValueError):
    """sqlglot could not parse (or transpile) a query."""


class DatabaseNotFoundError(AgenticSQLError, FileNotFoundError):
    """A database (``<db_root>/<db_id>/<db_id>.sqlite``) or the database folder itself does not exist.

    Args:
        db_id: the database id that was asked for (``None`` when the whole ``db_root`` is missing).
        path: the path that was looked for.
        detail: optional extra context (e.g. the dataset entry that referenced the database).
    """

    def __init__(self, db_id: str | None, path: str | os.PathLike, detail: str = ""):
        self.db_id = db_id
        self.path = str(path)
        self.detail = detail
        if db_id is None:
            msg = (
                f"database folder not found: {self.path} (expected a folder of "
                f"<db_id>/<db_id>.sqlite databases, the BIRD/Spider layout)"
            )
        else:
            msg = (
                f"database {db_id!r} not found: expected {self.path} "
                f"(layout <db_root>/<db_id>/<db_id>.sqlite)"
            )
        if detail:
            msg = f"{detail}: {msg}"
        super().__init__(msg)

    def __reduce__(self):  # picklable across process boundaries
        return (type(self), (self.db_id, self.path, self.detail))


class MalformedDatasetError(AgenticSQLError, MalformedInputError):
    """A BIRD / Spider split file does not have the expected shape; names the file and the entry index."""


class SandboxWorkerError(AgenticSQLError, RuntimeError):
    """Infrastructure failure of the sandbox: a worker process cannot start, or a gold query cannot
    run because the sandbox itself failed. Raised (once, with the cause) instead of being turned into
    a wrong score or a ``None`` reward."""


class DistributedSetupError(AgenticSQLError, ValueError):
    """A training / generation setting that cannot work in the requested (multi-GPU) setup, e.g. the
    text protocol under FSDP or ZeRO-3 without parameter gathering, or ``model_init_kwargs`` given
    together with an already loaded model."""


class UnsafeOutputDirError(AgenticSQLError, ValueError):
    """Refusal to write into a folder that holds other data (or to replace an existing file).

    agentic-sql writes synthetic suites only into a new or empty folder, or into a folder it marked as a
    synthetic suite itself (``.agentic-sql-synthetic`` marker file)."""


class GoldQueryError(AgenticSQLError, ValueError):
    """Gold queries of a dataset cannot run (SQL error, timeout, out of memory), found by
    :func:`agentic_sql.rewards.prerun_gold` with ``on_failure="raise"`` (or by a metric that needs
    every gold query, e.g. the Spider test-suite metric). ``failures`` lists them.

    Args:
        failures: :class:`agentic_sql.rewards.GoldFailure` records (or any objects with ``db_id``,
            ``gold_sql``, ``error`` and ``rows``).
        hint: what the caller can do instead (appended to the message).
    """

    def __init__(self, failures: list, hint: str | None = None):
        self.failures = list(failures)
        n_rows = sum(len(getattr(f, "rows", ()) or ()) for f in self.failures)
        first = self.failures[0] if self.failures else None
        msg = f"{len(self.failures)} gold queries cannot run"
        if n_rows:
            msg += f" ({n_rows} dataset rows)"
        if first is not None:
            sql = str(first.gold_sql)
            sql = sql if len(sql) <= 200 else sql[:197] + "..."
            msg += f"; first: db {first.db_id!r}: {first.error} — {sql}"
        self.hint = (
            hint
            if hint is not None
            else "pass on_failure='drop' to remove those rows (counted and logged) or 'flag' to keep "
            "them with reward None"
        )
        if self.hint:
            msg += f" ({self.hint})"
        super().__init__(msg)

    def __reduce__(self):  # picklable across process boundaries
        return (type(self), (self.failures, self.hint))
