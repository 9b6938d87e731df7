"""One adapter per memoizer: `wrap(tool, func, cache_dir)` returns the memoized callable,
configured as a user following the tool's documentation would (defaults unless said)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

TOOLS = ["bytecache", "lru_cache", "joblib", "diskcache", "diskcache.memoize", "cachier"]
PERSISTENT = [t for t in TOOLS if t != "lru_cache"]

DESCRIPTION = {
    "plain": "the function itself, not memoized (the reference; `--only process`)",
    "bytecache": "`@bytecache.memoize(cache_dir=d)`",
    "lru_cache": "`functools.lru_cache(maxsize=None)`: in-memory reference, not persistent",
    "joblib": "`joblib.Memory(d, verbose=0).cache`",
    "diskcache": "`diskcache.Cache(d)`: raw `get`/`set` with key `(name, args, sorted kwargs)`",
    "diskcache.memoize": "`diskcache.Cache(d).memoize()`",
    "cachier": "`@cachier(cache_dir=d)` (pickle backend, its defaults)",
}

_MISSING = object()
_open: list[Any] = []  # diskcache.Cache objects to close


def _diskcache_raw(func: Callable[..., Any], cache_dir: str) -> Callable[..., Any]:
    import diskcache

    cache = diskcache.Cache(cache_dir)
    _open.append(cache)
    name = f"{func.__module__}.{func.__qualname__}"

    def call(*args: Any, **kwargs: Any) -> Any:
        key = (name, args, tuple(sorted(kwargs.items())))
        value = cache.get(key, default=_MISSING)
        if value is _MISSING:
            value = func(*args, **kwargs)
            cache.set(key, value)
        return value

    return call


def wrap(tool: str, func: Callable[..., Any], cache_dir: str) -> Callable[..., Any]:
    if tool == "plain":
        return func
    if tool == "bytecache":
        import bytecache

        return bytecache.memoize(cache_dir=cache_dir)(func)
    if tool == "lru_cache":
        return functools.lru_cache(maxsize=None)(func)
    if tool == "joblib":
        import joblib

        return joblib.Memory(cache_dir, verbose=0).cache(func)
    if tool == "diskcache":
        return _diskcache_raw(func, cache_dir)
    if tool == "diskcache.memoize":
        import diskcache

        cache = diskcache.Cache(cache_dir)
        _open.append(cache)
        return cache.memoize()(func)
    if tool == "cachier":
        from cachier import cachier

        return cachier(cache_dir=cache_dir)(func)
    raise KeyError(tool)


def close_all() -> None:
    while _open:
        _open.pop().close()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("bytecache", "joblib", "diskcache", "cachier", "numpy", "matplotlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
