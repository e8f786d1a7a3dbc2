"""Package demos: each method package registers one in the ``papercore.demos`` entry-point group.

A demo is a zero-argument callable returning a :class:`DemoResult`. It runs the package's main
path on embedded defaults (tiny model, bundled data) in under a minute on CPU and compares the
method with its baseline measured in the same run. ``papercore demo`` runs them all and prints
one table.

Register in the package's ``pyproject.toml``::

    [project.entry-points."papercore.demos"]
    structkv = "structkv.demo:run_demo"
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

DEMO_GROUP = "papercore.demos"


@dataclass
class DemoResult:
    """One demo's outcome: the method's metric beside its baseline's, measured in the same run."""

    method: str
    baseline: str
    metric: str
    value: float
    baseline_value: float
    higher_is_better: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    package: str = ""
    seconds: float = 0.0

    @property
    def ratio(self) -> float:
        """``value / baseline_value`` (inf when the baseline is 0 and the value is not)."""
        if self.baseline_value == 0:
            return 1.0 if self.value == 0 else float("inf")
        return self.value / self.baseline_value


@dataclass
class DemoFailure:
    package: str
    error: str
    seconds: float = 0.0


def discover_demos(group: str = DEMO_GROUP) -> dict[str, EntryPoint]:
    """Installed demos by package name."""
    return {ep.name: ep for ep in entry_points(group=group)}


def run_demos(
    demos: dict[str, EntryPoint],
    names: Iterable[str] = (),
    *,
    on_start: Callable[[str], None] | None = None,
) -> list[DemoResult | DemoFailure]:
    """Run the selected demos (all when ``names`` is empty); a failing demo is reported, not raised.

    Raises ``KeyError`` naming the unknown packages and the installed ones when ``names`` asks for
    a demo that is not installed.
    """
    names = list(names) or sorted(demos)
    unknown = [n for n in names if n not in demos]
    if unknown:
        raise KeyError(
            f"no demo installed for {unknown}; installed demos: {sorted(demos) or 'none'}"
        )
    results: list[DemoResult | DemoFailure] = []
    for name in names:
        if on_start:
            on_start(name)
        t0 = time.perf_counter()
        try:
            res = demos[name].load()()
            if not isinstance(res, DemoResult):
                raise TypeError(f"demo {name!r} returned {type(res).__name__}, expected DemoResult")
            res.package = res.package or name
            res.seconds = time.perf_counter() - t0
            results.append(res)
        except Exception as e:  # a broken demo must not hide the others
            results.append(DemoFailure(name, f"{type(e).__name__}: {e}", time.perf_counter() - t0))
    return results
