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

__version__: str = _bytecache.__version__

__all__ = [
    "BytecacheError",
    "BytecacheWarning",
    "CorruptCacheError",
    "StorageError",
    "UnhashableError",
    "UnsafeCacheDirError",
    "clear",
    "configure",
    "disabled",
    "explain",
    "memoize",
    "stats",
]
