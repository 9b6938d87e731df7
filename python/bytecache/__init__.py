"""bytecache: safe, code-change-aware persistent memoization.

    import bytecache

    @bytecache.memoize
    def load(path, scale=2): ...

A result is reused only when a fresh run would compute the same thing: same
code (and everything it reaches), same globals, defaults and closure cells,
same argument contents, same data files read.
"""

from __future__ import annotations

import os

from bytecache import _bytecache, _validate
from bytecache._bytecache import (
    BytecacheError,
    CorruptCacheError,
    StorageError,
    UnhashableError,
    UnsafeCacheDirError,
)
from bytecache._config import BytecacheWarning, configure
from bytecache._core import disabled
from bytecache._memoize import clear, memoize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from IPython.core.interactiveshell import InteractiveShell

    from bytecache._explain import explain
    from bytecache._once import once
    from bytecache._stats import stats

# Loaded on first use (PEP 562): a process that only memoizes never imports
# them (part of what `import bytecache` costs a new process).
_LAZY = {"explain": "_explain", "once": "_once", "stats": "_stats"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bytecache' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"bytecache.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__version__: str = _bytecache.__version__


def enable(
    modules: Iterable[str] | str | None = None,
    *,
    min_seconds: float = 0.1,
    cache_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Memoize calls of functions defined in `modules` (names or globs; default:
    `__main__`) without decorators (per-function vectorcalls on 3.12+, a PEP 523
    frame hook on 3.11). Calls faster than `min_seconds` are not stored. See
    `bytecache._auto`.

    Raises ValueError for a negative or non-finite `min_seconds`, an empty
    `modules` or `cache_dir` (TypeError for values of the wrong type)."""
    names = (modules,) if isinstance(modules, str) else modules
    patterns = _validate.names("modules", names, what="module names or globs")
    if modules is not None and not patterns:
        raise ValueError("modules must name at least one module (None means __main__)")
    seconds = _validate.seconds("min_seconds", min_seconds)
    directory = _validate.directory("cache_dir", cache_dir)
    from bytecache import _auto

    _auto.enable(patterns or None, min_seconds=seconds, cache_dir=directory)


def disable() -> None:
    """Undo `enable`: every function it intercepted runs as before."""
    from bytecache import _auto

    _auto.disable()


def is_enabled() -> bool:
    """True while `enable` is in effect."""
    from bytecache import _auto

    return _auto.is_enabled()


__all__ = [
    "BytecacheError",
    "BytecacheWarning",
    "CorruptCacheError",
    "StorageError",
    "UnhashableError",
    "UnsafeCacheDirError",
    "clear",
    "configure",
    "disable",
    "disabled",
    "enable",
    "explain",
    "is_enabled",
    "memoize",
    "once",
    "stats",
]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """`%load_ext bytecache`: enable() for the notebook, and define-once."""
    from bytecache import _ipython

    _ipython.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """`%unload_ext bytecache`: disable() and stop define-once."""
    from bytecache import _ipython

    _ipython.unload_ipython_extension(ipython)
