"""bytecache: safe, code-change-aware persistent memoization.

    import bytecache

    @bytecache.memoize
    def load(path, scale=2): ...

A result is reused only when a fresh run would compute the same thing: same
code (and everything it reaches), same globals, defaults and closure cells,
same argument contents, same data files read.
"""

from bytecache import _bytecache
from bytecache._bytecache import (
    BytecacheError,
    CorruptCacheError,
    StorageError,
    UnhashableError,
    UnsafeCacheDirError,
)
from bytecache._config import BytecacheWarning, configure
from bytecache._core import disabled, stats
from bytecache._explain import explain
from bytecache._memoize import clear, memoize
from bytecache._once import once

__version__: str = _bytecache.__version__


def enable(modules=None, *, min_seconds=0.1, cache_dir=None):  # noqa: ANN001, ANN201
    """Memoize calls of functions defined in `modules` (default: `__main__`)
    without decorators. See `bytecache._auto`."""
    from bytecache import _auto

    _auto.enable(modules, min_seconds=min_seconds, cache_dir=cache_dir)


def disable():  # noqa: ANN201
    """Undo `enable`: every function it intercepted runs as before."""
    from bytecache import _auto

    _auto.disable()


def is_enabled():  # noqa: ANN201
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


def load_ipython_extension(ipython):  # noqa: ANN001, ANN201
    """`%load_ext bytecache`: enable() for the notebook, and define-once."""
    from bytecache import _ipython

    _ipython.load_ipython_extension(ipython)


def unload_ipython_extension(ipython):  # noqa: ANN001, ANN201
    from bytecache import _ipython

    _ipython.unload_ipython_extension(ipython)
