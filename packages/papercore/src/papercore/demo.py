"""Package demos: each method package registers one in the ``papercore.demos`` entry-point group.

A demo is a zero-argument callable returning a :class:`DemoResult`. It runs the package's main
path on embedded defaults (tiny model, bundled data) in under a minute on CPU and compares the
method with its baseline measured in the same run. ``papercore demo`` runs them all and prints
one table.

A ratio means something only when the baseline itself works: a demo reports the metric's
*floor* measured or known for the same data (zero-shot model, chance) and is a ``"claim"`` only
when the baseline clearly beats that floor (:func:`demo_kind`); otherwise it is a
``"pipeline check"``, which shows that the pipeline runs end to end and nothing more.

Register in the package's ``pyproject.toml``::

    [project.entry-points."papercore.demos"]
    structkv = "structkv.demo:run_demo"
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from papercore.errors import MalformedInputError

DEMO_GROUP = "papercore.demos"

DemoKind = Literal["claim", "pipeline check"]
DEMO_KINDS: tuple[str, ...] = ("claim", "pipeline check")


def demo_kind(
    baseline_value: float, floor: float, *, min_gain: float, higher_is_better: bool = True
) -> DemoKind:
    """``"claim"`` when the baseline beats the floor by at least ``min_gain`` (in the metric's
    units, in the better direction), else ``"pipeline check"``."""
    if min_gain < 0:
        raise MalformedInputError(f"min_gain must be >= 0, got {min_gain}")
    gain = baseline_value - floor if higher_is_better else floor - baseline_value
    return "claim" if gain >= min_gain - 1e-12 else "pipeline check"  # 0.5 - 0.4 < 0.1 in floats


@dataclass
class DemoResult:
    """One demo's outcome: the method's metric beside its baseline's, measured in the same run.

    ``floor`` is the level of the metric that needs no learning (``floor_name``: e.g. "zero-shot"
    for the untrained model, "chance" for uniform guessing), measured or known for the same data;
    ``kind`` is ``"claim"`` when the baseline clearly beats it and ``"pipeline check"`` when it
    does not (then the ratio says only that the pipeline runs). See :func:`demo_kind`.
    """

    method: str
    baseline: str
    metric: str
    value: float
    baseline_value: float
    higher_is_better: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    package: str = ""
    seconds: float = 0.0
    floor: float | None = None
    floor_name: str = ""
    kind: DemoKind = "claim"

    def __post_init__(self) -> None:
        if self.kind not in DEMO_KINDS:
            raise MalformedInputError(f"kind must be one of {DEMO_KINDS}, got {self.kind!r}")
        if self.floor is not None and not self.floor_name:
            raise MalformedInputError(
                f"a floor ({self.floor}) needs a floor_name (e.g. 'zero-shot', 'chance'), got ''"
            )

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
