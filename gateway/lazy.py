"""Package attributes imported on first use (PEP 562), for packages that re-export names.

A feature package's ``__init__`` re-exports the names other packages code against. Imported
eagerly, those would pull in the whole feature whenever any submodule is imported, the
``settings`` module the configuration schema needs included, and import cycles would follow.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of ``homes`` from its module
    (``{"SessionManager": "gateway.session.manager"}``) when it is first asked for."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home), name)

    return __getattr__
