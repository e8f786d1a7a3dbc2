"""Lazy public names for a package's ``__init__`` (so ``import pkg`` and ``pkg --help`` stay fast)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``where[name]`` (a module path) on first use.

    Use in a package's ``__init__``: ``__getattr__ = lazy_getattr(__name__, {"Name": "pkg.module"})``.
    The value is cached in the package namespace, so the import happens once.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
