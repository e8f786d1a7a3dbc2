"""Helpers for bench scripts: a one-line description of the machine, and the common argument parser."""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(threads: int | None = None) -> str:
    """E.g. ``"AMD EPYC, 2 cores (2 torch threads), no GPU, Python 3.11.7, torch 2.9.1"``.

    ``threads`` is the number of torch threads the bench used (read from torch when omitted and
    torch is already imported). The GPU part names the first CUDA device when torch sees one.
    """
    import sys

    cpu = f"{cpu_name()}, {os.cpu_count()} cores"
    torch = sys.modules.get("torch")  # only described when the bench imported it
    if threads is None and torch is not None:
        threads = torch.get_num_threads()
    if threads is not None:
        cpu += f" ({threads} torch thread{'s' if threads != 1 else ''})"
    parts = [cpu]
    if torch is not None:
        parts.append(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    parts.append(f"Python {platform.python_version()}")
    if torch is not None:
        parts.append(f"torch {torch.__version__}")
    return ", ".join(parts)


def bench_parser(doc: str | None, default_out: Path) -> argparse.ArgumentParser:
    """The argument parser of a bench script: its docstring as help, ``--out`` for the results JSON.

    Scripts add their own options to it; ``--help`` never runs the bench.
    """
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", type=Path, default=default_out, help=f"results JSON ({default_out.name})"
    )
    return p
