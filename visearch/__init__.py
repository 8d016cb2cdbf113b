"""visearch: keep a visual-search index fresh. ``docs/ARCHITECTURE.md`` maps the packages.

Each stage is a sub-package (``core``, ``ingest``, ``train``, ``evaluate``, ``embed``, ``index``,
``serve``, ``plan``, ``demo``, ``orchestration``, ``bench``) whose ``__init__`` re-exports its
public names lazily, through :func:`lazy_exports`: importing a package never pulls in torch, faiss
or pyspark until a name that needs them is used (DAG files and ``visearch --help`` stay light).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<module>`` on first use of a name.

    ``exports`` maps each public name to the module (relative to ``package``) that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
