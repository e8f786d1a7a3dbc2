"""Run untrusted generated programs: one subprocess per program, limits, a guard, a group kill.

:class:`Sandbox` runs a program against a test (:meth:`Sandbox.run`, HumanEval convention with an
entry point: ``test`` defines ``check(candidate)`` and the harness calls ``check(<entry_point>)``),
many in parallel (:meth:`Sandbox.run_batch`), or calls its entry point on probe inputs
(:meth:`Sandbox.call`, one subprocess for all inputs of one program).

What each run gets (the parent side is here, the child side in ``_guard.py``):

* a fresh interpreter ``sys.executable -I -S -B _guard.py`` (isolated mode: no ``PYTHON*`` variables,
  no user site; ``-S``: no site-packages, so candidates can import the standard library only; pass
  ``site_packages=True`` to allow e.g. numpy);
* a new session (``start_new_session=True``, no ``preexec_fn``: it is unsafe with threads), a fresh
  temporary working directory, a minimal environment built from nothing (``PATH``,
  ``PYTHONHASHSEED=0``, ``OMP_NUM_THREADS=1``), stdin delivering the job and then closed;
* limits set inside the child by the harness before user code: ``RLIMIT_AS`` (``memory_mb``),
  ``RLIMIT_CPU`` (timeout + 1 s), ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE = 0`` and
  ``RLIMIT_NPROC`` when not root (root ignores it);
* a PID namespace when ``unshare`` can make one (``pid_namespace="auto"``): every process the program
  starts, even one that escaped the guard and called ``setsid``, dies when the run ends; and the
  network cut with ``unshare --net`` (``network="deny"``, or ``"deny-if-possible"``, the default);
* SIGKILL to the whole process group after **every** run, not only on timeout;
* stdout / stderr read with caps: the first ``max_output_bytes`` are kept, and a run that writes
  more than ``output_limit_bytes`` in total is killed (status ``error``, detail ``output limit``);
* ``passed`` only when the harness writes the random per-run sentinel on its private result pipe
  after ``check()`` returned: ``sys.exit(0)``, ``os._exit(0)`` and printed markers never pass.

The guard prelude is not a security boundary (see ``_guard.py``); the process boundary, the limits,
the namespace and the group kill are. Infrastructure failures (the interpreter cannot start, the
result channel is garbled) raise :class:`~neurosym_cal.errors.SandboxError`.

Statuses: ``passed`` | ``failed`` (an assertion failed) | ``error`` (another exception, a missing
entry point, ``SystemExit``, an exit before the harness finished, output limit) | ``timeout`` (wall
clock or CPU limit) | ``memory`` (``MemoryError`` or ``ENOMEM``) | ``syntax`` (does not compile, or no
code at all) | ``crash`` (killed by a signal such as SIGSEGV).
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neurosym_cal.errors import SandboxError

logger = logging.getLogger(__name__)

STATUSES = ("passed", "failed", "error", "timeout", "memory", "syntax", "crash")
CALL_STATUSES = ("ok", "exception", "timeout", "memory", "syntax", "crash")
GUARD_PATH = Path(__file__).with_name("_guard.py")
#: seconds the child interpreter may take to start and report ready (not charged to the program)
STARTUP_TIMEOUT_S = 30.0
_READY_LINE = b'{"ready": true}\n'
_CHUNK = 1 << 16

NetworkMode = Literal["allow", "deny", "deny-if-possible"]


@dataclass
class ExecResult:
    """Outcome of one :meth:`Sandbox.run`. ``passed`` is true only when ``status == "passed"``."""

    passed: bool
    status: str
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "status": self.status,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration_s": self.duration_s,
            "detail": self.detail,
        }


@dataclass
class CallResult:
    """Outcome of one probe call: ``status`` in ``ok | exception | timeout | memory | syntax | crash``;
    ``out_repr`` is ``repr(return value)`` capped at ``repr_cap`` characters (``None`` unless ok);
    ``exc_type`` names the exception class for ``exception``."""

    status: str
    out_repr: str | None = None
    exc_type: str | None = None

    @property
    def signature(self) -> str:
        """The token used to compare programs (spec §2.1: ``repr(out) | EXC:<type> | TIMEOUT``)."""
        if self.status == "ok":
            return f"OUT:{self.out_repr}"
        if self.status == "exception":
            return f"EXC:{self.exc_type}"
        return self.status.upper()


@dataclass
class _RawRun:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    result: bytes
    timed_out: bool
    output_exceeded: bool
    duration_s: float
    signal_offset: bool  # the exit code came through ``sh``: 128 + signal means "killed by signal"


_UNSHARE_CACHE: dict[tuple[str, ...], bool] = {}
_UNSHARE_LOCK = threading.Lock()


def _unshare_works(flags: tuple[str, ...]) -> bool:
    """Whether ``unshare <flags>`` can start a process here (root, or user namespaces allowed)."""
    with _UNSHARE_LOCK:
        if flags not in _UNSHARE_CACHE:
            exe = shutil.which("unshare")
            ok = False
            if exe is not None and sys.platform.startswith("linux"):
                try:
                    r = subprocess.run(
                        [exe, *flags, "/bin/sh", "-c", "exit 0"],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=10,
                    )
                    ok = r.returncode == 0
                except (OSError, subprocess.TimeoutExpired):
                    ok = False
            _UNSHARE_CACHE[flags] = ok
            if not ok:
                logger.info("unshare %s is not available here", " ".join(flags))
        return _UNSHARE_CACHE[flags]


@dataclass
class Sandbox:
    """Runs programs in guarded subprocesses (see the module doc).

    Args:
        timeout_s: wall-clock limit of one run (:meth:`run`), counted from the moment the
            harness is ready (limits set, guard on; the interpreter start is not charged, up to
            ``STARTUP_TIMEOUT_S``); the CPU limit is ``ceil(timeout_s) + 1`` seconds.
        memory_mb: address-space limit (``RLIMIT_AS``) of the child.
        max_output_bytes: how much of stdout / stderr is kept in the result.
        n_workers: parallel runs in :meth:`run_batch` (threads, each launching subprocesses).
        output_limit_bytes: a run writing more than this to stdout + stderr is killed.
        fsize_bytes: largest file the program may write (``RLIMIT_FSIZE``).
        nofile: open-file limit (``RLIMIT_NOFILE``), nproc: process limit when not root.
        call_timeout_s: per-input limit of :meth:`call` (default ``min(1, timeout_s)``).
        repr_cap: characters kept of each probe output's ``repr`` (1 KiB).
        network: ``"deny"`` (``unshare --net``, raise if impossible), ``"deny-if-possible"`` or
            ``"allow"``. The guard blocks ``socket`` in every mode.
        pid_namespace: ``"auto"`` (use ``unshare --pid`` when it works), ``True`` (require it) or
            ``False``.
        site_packages: let candidates import installed packages (drops ``-S``).
    """

    timeout_s: float = 3.0
    memory_mb: int = 512
    max_output_bytes: int = 65536
    n_workers: int = 2
    output_limit_bytes: int = 1 << 20
    fsize_bytes: int = 1 << 20
    nofile: int = 64
    nproc: int = 64
    call_timeout_s: float | None = None
    repr_cap: int = 1024
    network: NetworkMode = "deny-if-possible"
    pid_namespace: bool | Literal["auto"] = "auto"
    site_packages: bool = False
    _prefix: list[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {self.timeout_s!r}")
        for name in (
            "memory_mb",
            "max_output_bytes",
            "n_workers",
            "output_limit_bytes",
            "fsize_bytes",
            "nofile",
            "nproc",
            "repr_cap",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.memory_mb < 64:
            raise ValueError(
                f"memory_mb must be >= 64 (the interpreter needs it), got {self.memory_mb}"
            )
        if self.network not in ("allow", "deny", "deny-if-possible"):
            raise ValueError(
                f"network must be 'allow', 'deny' or 'deny-if-possible', got {self.network!r}"
            )
        if self.pid_namespace not in (True, False, "auto"):
            raise ValueError(
                f"pid_namespace must be True, False or 'auto', got {self.pid_namespace!r}"
            )
        if self.call_timeout_s is None:
            self.call_timeout_s = min(1.0, self.timeout_s)
        if not self.call_timeout_s > 0:
            raise ValueError(f"call_timeout_s must be > 0, got {self.call_timeout_s!r}")
        if not sys.platform.startswith("linux"):
            logger.warning(
                "the sandbox is built for Linux (rlimits, process groups, namespaces); "
                "on %s only the timeout and the guard are certain",
                sys.platform,
            )

    # ------------------------------------------------------------------ public API
    @property
    def isolation(self) -> dict[str, bool]:
        """What this machine gives the runs: ``{"pid_namespace": ..., "network_denied": ...}``."""
        prefix = self._command_prefix()
        return {"pid_namespace": "--pid" in prefix, "network_denied": "--net" in prefix}

    def run(self, program: str | None, test: str, entry_point: str | None = None) -> ExecResult:
        """Run ``program`` then ``test`` in one namespace; with ``entry_point``, call ``check(<entry_point>)``.

        ``program=None`` or a text without code (only blanks / comments) is status ``syntax``.
        """
        if not isinstance(test, str):
            raise TypeError(f"test must be a string of Python code, got {type(test).__name__}")
        if entry_point is not None and not (
            isinstance(entry_point, str) and entry_point.isidentifier()
        ):
            raise ValueError(f"entry_point must be a Python identifier, got {entry_point!r}")
        if not _has_code(program):
            return ExecResult(False, "syntax", detail="no code in the program")
        job = {"mode": "tests", "program": program, "test": test, "entry_point": entry_point}
        raw, sentinel = self._launch(job, self.timeout_s)
        return self._interpret_run(raw, sentinel)

    def run_batch(
        self, items: Iterable[tuple[str | None, str] | tuple[str | None, str, str | None]]
    ) -> list[ExecResult]:
        """:meth:`run` on each ``(program, test[, entry_point])`` with ``n_workers`` threads; order kept."""
        jobs = [tuple(it) for it in items]
        for i, it in enumerate(jobs):
            if len(it) not in (2, 3):
                raise ValueError(
                    f"item {i}: expected (program, test) or (program, test, entry_point), got {len(it)} fields"
                )
        if not jobs:
            return []
        if self.n_workers == 1 or len(jobs) == 1:
            return [self.run(*it) for it in jobs]
        with ThreadPoolExecutor(max_workers=self.n_workers) as pool:
            return list(pool.map(lambda it: self.run(*it), jobs))

    def call(
        self, program: str | None, entry_point: str, inputs: Sequence[tuple]
    ) -> list[CallResult]:
        """Call ``entry_point(*args)`` for each ``args`` in ``inputs`` in one subprocess.

        Inputs must be Python literals (``ast.literal_eval`` round trip: numbers, strings, bytes,
        None, bools, tuples, lists, dicts, sets). Each call has ``call_timeout_s``; the whole run
        ``timeout_s + call_timeout_s`` (inputs not answered by then are ``timeout``). A program that does not compile gives
        ``syntax`` for every input; a process that dies gives ``crash`` (or ``timeout`` /
        ``memory``) for the inputs it did not answer.
        """
        if not (isinstance(entry_point, str) and entry_point.isidentifier()):
            raise ValueError(f"entry_point must be a Python identifier, got {entry_point!r}")
        literals = []
        for i, args in enumerate(inputs):
            if not isinstance(args, tuple):
                raise TypeError(
                    f"input {i}: expected a tuple of positional arguments, got {type(args).__name__}"
                )
            text = repr(args)
            try:
                if ast.literal_eval(text) != args and args == args:
                    raise ValueError
            except (ValueError, SyntaxError):
                raise ValueError(
                    f"input {i}: {text[:80]} is not a Python literal (numbers, strings, lists, "
                    "tuples, dicts, sets, None, bools)"
                ) from None
            literals.append(text)
        n = len(literals)
        if n == 0:
            return []
        if not _has_code(program):
            return [CallResult("syntax") for _ in range(n)]
        assert self.call_timeout_s is not None
        job = {
            "mode": "calls",
            "program": program,
            "entry_point": entry_point,
            "inputs": literals,
            "call_timeout_s": self.call_timeout_s,
            "repr_cap": self.repr_cap,
        }
        raw, sentinel = self._launch(job, self.timeout_s + self.call_timeout_s)
        return self._interpret_calls(raw, sentinel, n)

    def call_batch(
        self, items: Iterable[tuple[str | None, str, Sequence[tuple]]]
    ) -> list[list[CallResult]]:
        """:meth:`call` on each ``(program, entry_point, inputs)`` with ``n_workers`` threads; order kept."""
        jobs = list(items)
        if self.n_workers == 1 or len(jobs) <= 1:
            return [self.call(*it) for it in jobs]
        with ThreadPoolExecutor(max_workers=self.n_workers) as pool:
            return list(pool.map(lambda it: self.call(*it), jobs))

    # ------------------------------------------------------------------ launching
    def _command_prefix(self) -> list[str]:
        if self._prefix is None:
            flags: list[str] = []
            if self.pid_namespace in (True, "auto"):
                pid_flags = ("--pid", "--fork", "--kill-child")
                if _unshare_works(pid_flags):
                    flags += list(pid_flags)
                elif self.pid_namespace is True:
                    raise SandboxError(
                        "pid_namespace=True but `unshare --pid --fork` does not work here "
                        "(needs root or unprivileged user namespaces)"
                    )
            if self.network in ("deny", "deny-if-possible"):
                if _unshare_works(("--net",)):
                    flags.append("--net")
                elif self.network == "deny":
                    raise SandboxError(
                        "network='deny' but `unshare --net` does not work here; use "
                        "network='deny-if-possible' or 'allow' (the guard still blocks socket)"
                    )
            if flags:
                unshare = shutil.which("unshare")
                assert unshare is not None
                # ``sh`` is PID 1 of the namespace, so the interpreter keeps normal signal
                # semantics (PID 1 ignores default-action signals such as SIGXCPU).
                self._prefix = [
                    unshare,
                    *flags,
                    "/bin/sh",
                    "-c",
                    'unset PWD OLDPWD; "$@"; exit $?',
                    "sh",
                ]
            else:
                self._prefix = []
        return self._prefix

    def _launch(self, job: dict[str, Any], wall_s: float) -> tuple[_RawRun, str]:
        sentinel = secrets.token_hex(16)
        prefix = self._command_prefix()
        flags = ["-I", "-B"] if self.site_packages else ["-I", "-S", "-B"]
        result_r, result_w = os.pipe()
        job = dict(job)
        job.update(
            sentinel=sentinel,
            result_fd=result_w,
            memory_mb=self.memory_mb,
            cpu_s=math.ceil(wall_s) + 1,
            fsize_bytes=self.fsize_bytes,
            nofile=self.nofile,
            nproc=self.nproc,
        )
        payload = marshal.dumps(job)  # the child reads it without importing json
        env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        with tempfile.TemporaryDirectory(prefix="nsc-run-") as workdir:
            t0 = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    [*prefix, sys.executable, *flags, str(GUARD_PATH), os.path.basename(workdir)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=workdir,
                    env=env,
                    pass_fds=(result_w,),
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as e:
                os.close(result_r)
                os.close(result_w)
                raise SandboxError(f"could not start the sandbox interpreter: {e}") from e
            os.close(result_w)
            try:
                raw = self._pump(proc, payload, result_r, wall_s, t0)
            except BaseException:
                _kill_group(proc)
                proc.wait()
                raise
            finally:
                os.close(result_r)
            raw.signal_offset = bool(prefix)
        return raw, sentinel

    def _pump(
        self, proc: subprocess.Popen, payload: bytes, result_r: int, wall_s: float, t0: float
    ) -> _RawRun:
        """Feed the job, read the three channels with caps until exit or deadline; then kill."""
        assert proc.stdin and proc.stdout and proc.stderr
        sel = selectors.DefaultSelector()
        bufs: dict[str, bytearray] = {"out": bytearray(), "err": bytearray(), "res": bytearray()}
        caps = {"out": self.max_output_bytes, "err": self.max_output_bytes, "res": 1 << 22}
        total_output = 0
        stdin_fd = proc.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE, "in")
        for name, fd in (
            ("out", proc.stdout.fileno()),
            ("err", proc.stderr.fileno()),
            ("res", result_r),
        ):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, name)
        view = memoryview(payload)
        # the wall clock starts when the harness reports ready (limits set, guard on), so a slow
        # interpreter start on a loaded machine is not charged to the program; the start itself
        # gets STARTUP_TIMEOUT_S (a harness that never gets ready is a SandboxError)
        deadline = t0 + STARTUP_TIMEOUT_S
        ready = False
        exited_at: float | None = None
        timed_out = exceeded = False
        try:
            while sel.get_map():
                now = time.perf_counter()
                if now >= deadline:
                    timed_out = _alive(proc)
                    break
                if exited_at is None and not _alive(proc):
                    exited_at = now
                # after the child exited, give pipes held by its leftovers 0.2 s to close
                if exited_at is not None and now - exited_at > 0.2:
                    break
                for key, _ in sel.select(timeout=min(0.05, deadline - now)):
                    name = key.data
                    if name == "in":
                        try:
                            n = os.write(stdin_fd, view[:_CHUNK])
                            view = view[n:]
                        except (BrokenPipeError, BlockingIOError) as e:
                            if isinstance(e, BrokenPipeError):
                                view = view[:0]
                        if not view:
                            sel.unregister(stdin_fd)
                            proc.stdin.close()
                        continue
                    try:
                        chunk = os.read(key.fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    buf = bufs[name]
                    room = caps[name] - len(buf)
                    if room > 0:
                        buf += chunk[:room]
                    if name == "res" and not ready and _READY_LINE in buf:
                        ready = True
                        deadline = time.perf_counter() + wall_s
                    if name != "res":
                        total_output += len(chunk)
                        if total_output > self.output_limit_bytes:
                            exceeded = True
                            break
                if exceeded:
                    break
        finally:
            sel.close()
            if not proc.stdin.closed:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        # the leader is not reaped yet (``_alive`` uses WNOWAIT), so its pid is still the group id
        _kill_group(proc)
        try:
            returncode = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL did not work
            raise SandboxError(f"sandbox process {proc.pid} did not die after SIGKILL") from None
        # what is left in the result pipe (written just before exit)
        while True:
            try:
                chunk = os.read(result_r, _CHUNK)
            except (BlockingIOError, OSError):
                break
            if not chunk or len(bufs["res"]) > caps["res"]:
                break
            bufs["res"] += chunk
        proc.stdout.close()
        proc.stderr.close()
        return _RawRun(
            returncode=returncode,
            stdout=bytes(bufs["out"]),
            stderr=bytes(bufs["err"]),
            result=bytes(bufs["res"]),
            timed_out=timed_out,
            output_exceeded=exceeded,
            duration_s=time.perf_counter() - t0,
            signal_offset=False,
        )

    # ------------------------------------------------------------------ interpreting
    @staticmethod
    def _messages(raw: _RawRun) -> list[dict[str, Any]]:
        msgs = []
        for line in raw.result.decode("utf-8", "replace").splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # user code may write to the fd; only sentinel-bearing lines count
            if isinstance(obj, dict):
                msgs.append(obj)
        return msgs

    @staticmethod
    def _signal_of(raw: _RawRun) -> int | None:
        rc = raw.returncode
        if rc is None:
            return None
        if rc < 0:
            return -rc
        if raw.signal_offset and rc > 128:
            return rc - 128
        return None

    def _died_status(self, raw: _RawRun) -> tuple[str, str]:
        """Status of a run that ended without a harness report."""
        if raw.timed_out:
            return "timeout", f"wall-clock limit {self.timeout_s:g} s"
        if raw.output_exceeded:
            return "error", f"output limit: more than {self.output_limit_bytes} bytes written"
        sig = self._signal_of(raw)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and raw.duration_s >= self.timeout_s):
            return "timeout", "CPU-time limit"
        if sig is not None:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
            return "crash", f"killed by signal {name}"
        return "error", f"exited (code {raw.returncode}) before the harness finished"

    def _interpret_run(self, raw: _RawRun, sentinel: str) -> ExecResult:
        out = raw.stdout.decode("utf-8", "replace")
        err = raw.stderr.decode("utf-8", "replace")
        msgs = self._messages(raw)
        self._check_harness(raw, msgs, err)
        passed = any(m.get("pass") == sentinel for m in msgs)
        if raw.timed_out:
            status, detail = "timeout", f"wall-clock limit {self.timeout_s:g} s"
            passed = False
        elif raw.output_exceeded:
            status, detail = self._died_status(raw)
            passed = False
        elif passed:
            status, detail = "passed", ""
        else:
            reports = [m for m in msgs if m.get("status") in STATUSES]
            if reports:
                status = str(reports[0]["status"])
                detail = str(reports[0].get("detail", ""))
                if status == "passed":  # a forged report without the sentinel
                    status, detail = "error", "forged pass report"
            else:
                status, detail = self._died_status(raw)
        return ExecResult(
            passed=passed,
            status=status,
            stdout=out,
            stderr=err,
            duration_s=raw.duration_s,
            detail=detail,
        )

    @staticmethod
    def _check_harness(raw: _RawRun, msgs: list[dict[str, Any]], err: str) -> None:
        """A harness that never reached user code is an infrastructure failure, not a label."""
        if not any(m.get("ready") is True for m in msgs):
            raise SandboxError(
                f"the sandbox harness did not reach user code (exit code {raw.returncode}, "
                f"timed out: {raw.timed_out}); stderr: {err[-800:]!r}"
            )

    def _interpret_calls(self, raw: _RawRun, sentinel: str, n: int) -> list[CallResult]:
        all_msgs = self._messages(raw)
        self._check_harness(raw, all_msgs, raw.stderr.decode("utf-8", "replace"))
        msgs = [m for m in all_msgs if m.get("t") == sentinel]
        results: list[CallResult | None] = [None] * n
        for m in msgs:
            if m.get("stage") == "program":
                st = m.get("status")
                status = (
                    "syntax" if st == "syntax" else ("memory" if st == "memory" else "exception")
                )
                exc = str(m.get("detail", "")).split(":", 1)[0].strip() or None
                return [CallResult(status, None, exc) for _ in range(n)]
            i = m.get("i")
            if isinstance(i, int) and 0 <= i < n and results[i] is None:
                st = m.get("status")
                if st not in CALL_STATUSES:
                    continue
                results[i] = CallResult(str(st), m.get("out"), m.get("exc"))
        syntax = [m for m in all_msgs if m.get("status") == "syntax" and "i" not in m]
        if syntax and all(r is None for r in results):
            return [CallResult("syntax") for _ in range(n)]
        if any(r is None for r in results):
            status, _ = self._died_status(raw)
            if status == "error":
                status = "crash"
            if status not in CALL_STATUSES:
                status = "crash"
            results = [r if r is not None else CallResult(status) for r in results]
        return [r for r in results if r is not None]


def _alive(proc: subprocess.Popen) -> bool:
    """Whether the child still runs, without reaping it (so its pid stays its group's id)."""
    if proc.returncode is not None:
        return False
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return info is None


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (its pgid is its pid: new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _has_code(program: str | None) -> bool:
    """False for None and for text with nothing but blanks and comments."""
    if program is None:
        return False
    if not isinstance(program, str):
        raise TypeError(f"program must be a string or None, got {type(program).__name__}")
    for line in program.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            return True
    return False


__all__ = ["CALL_STATUSES", "STATUSES", "CallResult", "ExecResult", "Sandbox"]
