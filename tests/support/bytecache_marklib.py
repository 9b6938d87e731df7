"""A pytest plugin (`-p bytecache_marklib`): memoizes every function of the
library named by $BYTECACHE_MARK_LIB (its test modules excluded) with
`bytecache.enable(modules=..., min_seconds=0)`, to run the library's own test
suite under bytecache, and leaves out the tests that use a fixture named in
$REALLIB_SKIP_FIXTURES (comma-separated; in runs with and without bytecache
alike). Used by tests/test_real_libraries.py."""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any


def pytest_configure(config: object) -> None:
    name = os.environ.get("BYTECACHE_MARK_LIB")
    if not name:
        return
    import bytecache

    package = importlib.import_module(name)
    modules = [name]
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if ".tests" in info.name or ".test_" in info.name or info.name.endswith(".conftest"):
            continue
        modules.append(info.name)
    bytecache.enable(modules=modules, min_seconds=0)
    # The store keeps its lock and data files open from its first use; use it
    # now, so suites that count descriptors around a test (zict's leak
    # check) do not count bytecache's.
    warm_up = bytecache.memoize(_warm_up)
    warm_up(0)
    warm_up(0)


def _warm_up(x: int) -> int:
    return x


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    skip = {f for f in os.environ.get("REALLIB_SKIP_FIXTURES", "").split(",") if f}
    if not skip:
        return
    kept = [i for i in items if not skip & set(getattr(i, "fixturenames", ()))]
    left = [i for i in items if i not in kept]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


def pytest_unconfigure(config: object) -> None:
    if not os.environ.get("BYTECACHE_MARK_LIB"):
        return
    import bytecache

    s = bytecache.stats()
    print(f"\nBYTECACHE-STATS hits={s['hits']} misses={s['misses']} stored={s['stored']} "
          f"uncacheable={s['uncacheable']}")
