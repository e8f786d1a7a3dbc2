"""Shared CLI pieces (typer options, rich progress, clean error exits) and the ``papercore`` command."""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=True)
out = Console()

# Options every package's CLI shares. Use as ``model: ModelOpt`` in a typer command.
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Model name or local path (loaded offline first).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, or auto.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Output file or directory.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


#: set to 1 to print the traceback above the one-line error of :func:`clean_errors`
TRACEBACK_ENV = "PAPERCORE_TRACEBACK"


def show_tracebacks(verbose: bool = False) -> bool:
    """Whether :func:`clean_errors` prints tracebacks: ``PAPERCORE_TRACEBACK=1`` or ``--verbose``."""
    return verbose or os.environ.get(TRACEBACK_ENV, "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )


def clean_errors(fn: F) -> F:
    """Turn expected errors (bad input, missing files, missing backends) into one red line and exit code 2.

    The traceback is printed to stderr above that line when ``PAPERCORE_TRACEBACK=1`` is set or
    the command was called with ``--verbose`` (a ``verbose=True`` keyword argument). A
    ``TypeError`` / ``KeyError`` not raised on purpose by papercore is more likely a bug than bad
    input, so its line also says how to see the traceback.
    """
    from papercore.errors import PapercoreError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (
            PapercoreError,
            ValueError,
            TypeError,
            OSError,  # FileNotFoundError, PermissionError, a full disk, a read-only folder
            KeyError,
            ImportError,
        ) as e:
            shown = show_tracebacks(kwargs.get("verbose") is True)
            if shown:
                sys.stderr.write(traceback.format_exc())
                sys.stderr.flush()
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            hint = ""
            if (
                not shown
                and isinstance(e, (TypeError, KeyError))
                and not isinstance(e, PapercoreError)
            ):
                hint = f" (set {TRACEBACK_ENV}=1 for the traceback)"
            console.print(
                f"[bold red]error:[/] {type(e).__name__}: {escape(str(msg))}{hint}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def make_progress(transient: bool = False) -> Progress:
    """A rich progress bar with count, elapsed and remaining time (writes to stderr)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    with make_progress() as progress:
        yield from progress.track(items, total=total, description=description)


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner for a step of unknown length."""
    with console.status(message):
        yield


def version_option(dist: str) -> Any:
    """An eager ``--version`` typer option that prints ``<dist> <version>`` and exits."""

    def show(value: bool) -> None:
        if value:
            from importlib.metadata import PackageNotFoundError
            from importlib.metadata import version as dist_version

            try:
                out.print(f"{dist} {dist_version(dist)}")
            except PackageNotFoundError:
                out.print(f"{dist} (not installed)")
            raise typer.Exit()

    return typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=show
    )


def make_app(dist: str, help: str) -> typer.Typer:
    """A package's root typer app: help when called without arguments, and ``--version``."""
    sub = typer.Typer(name=dist, help=help, no_args_is_help=True, add_completion=False)

    @sub.callback()
    def _root(version: bool = version_option(dist)) -> None:
        pass

    _root.__doc__ = help
    return sub


app = typer.Typer(
    name="papercore",
    help="Shared core of the paper-methods workspace: run every installed method's demo, show versions.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def demo(
    packages: Annotated[
        list[str] | None, typer.Argument(help="Packages to run (default: every installed demo).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run each installed method package's demo and print one summary table."""
    from papercore.demo import DemoFailure, discover_demos, run_demos

    setup_logging(verbose)
    demos = discover_demos()
    if not demos:
        out.print(
            "No method packages with a demo are installed yet, so there is nothing to run. "
            "Install one (for example `pip install structkv`) and run `papercore demo` again."
        )
        return
    try:
        results = run_demos(
            demos, packages or [], on_start=lambda n: console.print(f"running demo: [bold]{n}[/]")
        )
    except KeyError as e:
        console.print(f"[bold red]error:[/] {e.args[0]}")
        raise typer.Exit(2) from None
    table = Table(title="papercore demo")
    if not out.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        out.width = max(out.width, 200)
    numeric = ("method value", "baseline value", "floor", "ratio", "seconds")
    for col in (
        "package",
        "kind",
        "method",
        "baseline",
        "metric",
        "method value",
        "baseline value",
        "floor",
        "ratio",
        "seconds",
    ):
        table.add_column(col, justify="right" if col in numeric else "left")
    failures = [r for r in results if isinstance(r, DemoFailure)]
    checks = []
    for r in results:
        if isinstance(r, DemoFailure):
            table.add_row(
                r.package, "", "[red]FAILED[/]", "", "", "", "", "", "", f"{r.seconds:.1f}"
            )
            continue
        floor = "—" if r.floor is None else f"{r.floor:.4g} ({r.floor_name})"
        ratio = f"{r.ratio:.3g}×"
        if r.kind == "pipeline check":
            checks.append(r)
            ratio = f"[dim]{ratio}[/]"
        table.add_row(
            r.package,
            r.kind,
            r.method,
            r.baseline,
            r.metric,
            f"{r.value:.4g}",
            f"{r.baseline_value:.4g}",
            floor,
            ratio,
            f"{r.seconds:.1f}",
        )
    out.print(table)
    for r in checks:
        out.print(
            f"{r.package}: pipeline check, not a claim: the baseline ({r.baseline}, "
            f"{r.baseline_value:.4g}) does not clearly beat its floor"
            + ("" if r.floor is None else f" ({r.floor_name}, {r.floor:.4g})")
            + " in this miniature, so the ratio only shows that the pipeline runs end to end.",
            highlight=False,
            soft_wrap=True,
        )
    for r in failures:
        out.print(f"FAILED {r.package}: {r.error}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def info() -> None:
    """Versions of papercore, its key dependencies, and the installed method packages."""
    from importlib.metadata import PackageNotFoundError, version

    from papercore.demo import discover_demos

    table = Table(title="environment")
    table.add_column("package")
    table.add_column("version")
    for name in (
        "papercore",
        "torch",
        "transformers",
        "tokenizers",
        "trl",
        "sentence-transformers",
        "vllm",
        "faiss-cpu",
    ):
        try:
            table.add_row(name, version(name))
        except PackageNotFoundError:
            table.add_row(name, "[dim]not installed[/]")
    out.print(table)
    out.print(
        f"python {sys.version.split()[0]}; demos installed: {sorted(discover_demos()) or 'none'}"
    )


@app.callback()
def _root(version: bool = version_option("papercore")) -> None:
    """Shared core of the paper-methods workspace: run every installed method's demo, show versions."""
