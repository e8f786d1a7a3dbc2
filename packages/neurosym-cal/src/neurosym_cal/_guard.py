"""Child-side harness of :mod:`neurosym_cal.sandbox` (run as a script, never imported by the library).

Started as ``python -I -S -B _guard.py <run-tag>`` by :class:`neurosym_cal.sandbox.Sandbox`. In order:

1. reads the job (marshal: program, test, entry point, mode, limits, sentinel) from stdin to EOF,
   then replaces fd 0 with ``/dev/null`` (user code sees a closed, empty stdin);
2. sets the resource limits (address space, CPU seconds, file size, open files, core size 0, and the
   process count when not root: root ignores ``RLIMIT_NPROC``);
3. imports what it needs, then applies the *guard*: replaces process-creation, signalling, session
   and file-deletion functions of ``os`` / ``posix`` by stubs raising ``PermissionError``, blocks
   ``subprocess``, ``multiprocessing``, ``socket``, ``ctypes``, ``pty`` … in ``sys.modules``;
4. compiles and runs the program, then the test (``check(<entry_point>)`` when an entry point is
   given), in one fresh namespace whose ``__name__`` is ``"__candidate__"`` (so a
   ``if __name__ == "__main__":`` block in a completion does not run);
5. reports on the *result fd* (an inherited pipe, not stdout): one JSON line per event. Only the line
   ``{"pass": <sentinel>}`` written after ``check()`` returned makes the parent report ``passed``;
   the sentinel is a random per-run token (``secrets.token_hex``) that never appears on stdout or in
   any file. Then it flushes and calls ``os._exit(0)``.

The guard is **not a security boundary**: user code runs in the same interpreter and can undo it
(for example by re-importing the ``posix`` built-in module, or by walking frames to find the
sentinel). It stops accidents and naive model output (``os.system("rm ...")``, ``sys.exit(0)``,
printing a fake "passed" marker). The boundary is the parent's: one subprocess per program, a new
session, limits set here before any user code, a PID namespace when available (every process of
the run dies with it), and a SIGKILL to the whole process group after every run.
"""

import _signal  # the C module: ``signal`` imports enum + functools (~12 ms a run)
import marshal
import os
import resource
import sys

# --- 1. the job, then stdin closed -------------------------------------------------------------
_parts = []
while True:
    _chunk = os.read(0, 1 << 16)
    if not _chunk:
        break
    _parts.append(_chunk)
_JOB = marshal.loads(b"".join(_parts))  # written by the parent (trusted); results go back as JSON
del _parts, _chunk
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)

_RESULT_FD = int(_JOB["result_fd"])


_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"'})


def _json_value(v):
    """JSON text of None / bool / int / float / str (anything else: its str); no ``json`` import
    (it pulls in ``re``: ~15 ms at every run)."""
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else "null"
    if not isinstance(v, str):
        v = str(v)
    return '"' + v.translate(_ESCAPES) + '"'


def _json_object(fields):
    return "{" + ", ".join(f"{_json_value(k)}: {_json_value(v)}" for k, v in fields.items()) + "}"


def _make_reporters(sentinel):
    """Report functions; the sentinel lives only in their closure (not a module global)."""

    def report(**fields):
        """One JSON line on the result fd (never on stdout)."""
        line = (_json_object(fields) + "\n").encode("utf-8", "replace")
        try:  # noqa: SIM105 - contextlib costs an import at every run
            os.write(_RESULT_FD, line)
        except OSError:
            pass

    def report_pass():
        report(**{"pass": sentinel})

    def report_call(**fields):
        report(t=sentinel, **fields)

    return report, report_pass, report_call


_report, _report_pass, _report_call = _make_reporters(_JOB.pop("sentinel"))


# --- 2. resource limits, before any user code ---------------------------------------------------
def _limit(which, soft, hard=None):
    hard = soft if hard is None else hard
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError):
        _report(warning=f"could not set limit {which} to {soft}")


_mem = int(_JOB["memory_mb"]) * 1024 * 1024
_cpu = int(_JOB["cpu_s"])
_limit(resource.RLIMIT_AS, _mem)
_limit(resource.RLIMIT_CPU, _cpu, _cpu + 1)
_limit(resource.RLIMIT_FSIZE, int(_JOB["fsize_bytes"]))
_limit(resource.RLIMIT_CORE, 0)
if os.getuid() != 0:  # root ignores RLIMIT_NPROC; for others it stops fork bombs
    _limit(resource.RLIMIT_NPROC, int(_JOB["nproc"]))

# --- 3. what the harness needs, then the guard ---------------------------------------------------
import builtins  # noqa: E402
import errno  # noqa: E402
import io  # noqa: E402
import posix  # noqa: E402

_limit(resource.RLIMIT_NOFILE, int(_JOB["nofile"]))

_OS_REMOVED = (
    # processes, sessions, signals
    "fork",
    "forkpty",
    "vfork",
    "kill",
    "killpg",
    "setsid",
    "setpgid",
    "setpgrp",
    "tcsetpgrp",
    "setuid",
    "seteuid",
    "setgid",
    "setegid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "system",
    "popen",
    "posix_spawn",
    "posix_spawnp",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "pidfd_open",
    "plock",
    "nice",
    # files and directories (deletion, renaming, permissions, links)
    "remove",
    "unlink",
    "rmdir",
    "removedirs",
    "rename",
    "renames",
    "replace",
    "truncate",
    "chmod",
    "fchmod",
    "lchmod",
    "chown",
    "fchown",
    "lchown",
    "chroot",
    "chflags",
    "lchflags",
    "link",
    "symlink",
    "mkfifo",
    "mknod",
    "fchdir",
    "chdir",
)


def _disabled(name):
    def disabled(*args, **kwargs):
        raise PermissionError(f"sandbox: os.{name} is disabled")

    disabled.__name__ = name
    return disabled


# Replaced by stubs that raise PermissionError (not deleted: modules such as shutil and tempfile
# read these attributes at import time). shutil is not imported here (~7 ms a run): its rmtree /
# move / chown call the stubs and fail with them.
for _name in _OS_REMOVED:
    for _mod in (os, posix):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _disabled(_name))
for _name in (
    "subprocess",
    "_posixsubprocess",
    "multiprocessing",
    "_multiprocessing",
    "socket",
    "_socket",
    "ssl",
    "_ssl",
    "ctypes",
    "_ctypes",
    "pty",
    "resource",
    "asyncio",
    "concurrent",
    "webbrowser",
):
    sys.modules[_name] = None  # `import <name>` now raises ImportError
builtins.exit = None
builtins.quit = None
builtins.help = None

# Writing is allowed inside the working directory only (``open(path, "w")`` truncates: a write,
# not a delete, but it destroys a file as surely, so it is refused outside the working dir).
_WORKDIR = os.path.realpath(os.getcwd())
_io_open = io.open
_os_open = os.open
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _inside_workdir(file):
    if isinstance(file, int):
        return True  # an already open descriptor
    path = os.path.realpath(os.fspath(file))
    return path == _WORKDIR or path.startswith(_WORKDIR + os.sep)


def _guarded_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and not _inside_workdir(file):
        raise PermissionError(f"sandbox: writing outside the working directory: {file!r}")
    return _io_open(file, mode, *args, **kwargs)


def _guarded_os_open(path, flags, *args, **kwargs):
    if flags & _WRITE_FLAGS and not _inside_workdir(path):
        raise PermissionError(f"sandbox: writing outside the working directory: {path!r}")
    return _os_open(path, flags, *args, **kwargs)


builtins.open = _guarded_open
io.open = _guarded_open
os.open = _guarded_os_open
_report(ready=True)  # the parent treats a run without this line as a sandbox failure


# --- 4. run ----------------------------------------------------------------------------------
class _CallTimeout(BaseException):
    """Raised by the per-call alarm of the probe mode."""


def _on_alarm(signum, frame):
    raise _CallTimeout()


def _exc_status(exc):
    if isinstance(exc, MemoryError) or (
        isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.ENOMEM
    ):
        return "memory"
    if isinstance(exc, AssertionError):
        return "failed"
    return "error"


def _describe(exc):
    try:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    except Exception:  # a broken __str__
        text = type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.lineno:
        text += f" (line {exc.lineno})"
    return text[-2000:]


def _flush_and_exit(code):
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - a user may have replaced the streams
            stream.flush()
        except Exception:
            pass
    os._exit(code)


_NS = {"__name__": "__candidate__", "__builtins__": builtins}


def _compile(src, name):
    try:
        return compile(src, name, "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        _report(status="syntax", detail=_describe(exc), where=name)
        _flush_and_exit(0)


def _run_tests():
    code = _compile(_JOB["program"], "<program>")
    test = _compile(_JOB["test"], "<test>")
    stage = "program"
    try:
        exec(code, _NS)
        stage = "test"
        exec(test, _NS)
        entry = _JOB.get("entry_point")
        if entry:
            stage = "check"
            if entry not in _NS:
                raise NameError(f"the program does not define {entry!r}")
            if "check" not in _NS:
                raise NameError("the test does not define check(candidate)")
            _NS["check"](_NS[entry])
    except BaseException as exc:
        _report(status=_exc_status(exc), detail=_describe(exc), stage=stage)
        _flush_and_exit(0)
    _report_pass()
    _flush_and_exit(0)


def _run_calls():
    from ast import literal_eval  # only the probe mode needs it (~4 ms)

    code = _compile(_JOB["program"], "<program>")
    entry = _JOB["entry_point"]
    per_call = float(_JOB["call_timeout_s"])
    cap = int(_JOB["repr_cap"])
    try:
        exec(code, _NS)
        fn = _NS[entry]
    except BaseException as exc:
        _report_call(status=_exc_status(exc), detail=_describe(exc), stage="program")
        _flush_and_exit(0)
    _signal.signal(_signal.SIGALRM, _on_alarm)
    for i, literal in enumerate(_JOB["inputs"]):
        args = literal_eval(literal)
        status, out, exc_type = "ok", None, None
        _signal.setitimer(_signal.ITIMER_REAL, per_call)
        try:
            try:
                value = fn(*args)
            finally:
                _signal.setitimer(_signal.ITIMER_REAL, 0)
            try:
                out = repr(value)
            except BaseException as exc:
                out = f"<unreprable {type(exc).__name__}>"
        except _CallTimeout:
            status = "timeout"
        except BaseException as exc:
            status = "memory" if _exc_status(exc) == "memory" else "exception"
            exc_type = type(exc).__name__
        if out is not None and len(out) > cap:
            out = out[:cap] + "...<truncated>"
        _report_call(i=i, status=status, out=out, exc=exc_type)
    _report_call(done=True)
    _flush_and_exit(0)


if _JOB["mode"] == "calls":
    _run_calls()
else:
    _run_tests()
