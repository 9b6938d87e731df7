"""`@bytecache.memoize`: persistent memoization of one function."""

from __future__ import annotations

import os

from bytecache import _bytecache, _config, _core, _validate

TYPE_CHECKING = False  # typing costs ~10 ms to import; only checkers need it

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, overload

    from bytecache._types import CacheInfo, Memoized, P, R


async def _begin_async(target: _core.Target, arguments: dict[str, Any], min_seconds: float,
                       key: Any) -> tuple[bool, Any]:
    """`_core.begin` for a coroutine: while another caller (a task of this
    event loop, another thread or process) computes the same call, wait by
    awaiting, never by blocking the event loop."""
    import asyncio
    import time

    deadline = time.monotonic() + _core.CLAIM_TIMEOUT
    nap = 0.001
    while True:
        hit, token = _core.begin(target, arguments, min_seconds=min_seconds, key=key, wait=False)
        if token is not _core.BUSY:
            return hit, token
        if time.monotonic() > deadline:
            return False, None  # compute it ourselves, uncached
        await asyncio.sleep(nap)
        nap = min(nap * 2, 0.05)


# `co_flags` of generator and coroutine functions (`inspect`'s constants;
# `inspect` itself costs milliseconds to import).
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200


def _starter(target: _core.Target, min_seconds: float) -> Any:
    """The wrapper's full path: `begin(arguments, key, absent)` answers as
    the hook's `on_call` does: None (run the function), `(value,)` (a hit)
    or the pending `_miss.Miss`. `absent`: the wrapper found nothing at
    `key` in the local store."""

    def begin(arguments: dict[str, Any], key: bytes | None, absent: bool = False) -> Any:
        hit, value = _core.begin(target, arguments, min_seconds=min_seconds, key=key,
                                 absent=absent)
        return (value,) if hit else value

    return begin


def _wrap(func: Any, *, cache_dir: str | None, ignore: tuple[str, ...], min_seconds: float) -> Any:
    import functools
    import types

    if isinstance(func, (staticmethod, classmethod)):
        inner = _wrap(func.__func__, cache_dir=cache_dir, ignore=ignore, min_seconds=min_seconds)
        return type(func)(inner)
    if not isinstance(func, types.FunctionType):
        raise TypeError(f"bytecache.memoize needs a Python function, not {type(func).__name__}")
    flags = func.__code__.co_flags
    if flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR):
        raise TypeError(
            f"bytecache.memoize cannot memoize generator function `{func.__qualname__}`: "
            "its result is consumed lazily; memoize a function that returns a list instead"
        )
    target = _core.Target(func, ignore=ignore, cache_dir=cache_dir)
    unknown = set(ignore) - set(target.memo.names)
    if unknown:
        raise TypeError(f"ignore= names no parameter of `{func.__qualname__}`: {sorted(unknown)}")
    wrapper: Any
    if flags & _CO_COROUTINE:
        quick, bind = target.memo.quick, target.memo.bind

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            kept = quick(args, kwargs)  # a result kept in this process, or the key
            if isinstance(kept, tuple):
                return kept[0]
            arguments = bind(args, kwargs)
            if arguments is None:  # the call raises: the function says why
                return await func(*args, **kwargs)
            hit, token = await _begin_async(target, arguments, min_seconds, kept)
            if hit:
                return token
            if token is None:
                return await func(*args, **kwargs)
            try:
                box = [await func(*args, **kwargs)]
            except BaseException:
                token.abort()
                raise
            token.commit(box)
            return box[0]

        def cache_info() -> CacheInfo:
            """Hits, misses and time saved for this function in this process."""
            return target.counters.as_dict()  # type: ignore[return-value]

        def cache_clear() -> int:
            """Drop this function's stored results (all versions)."""
            return clear_group(target)

        wrapper = async_wrapper
        wrapper.cache_info = cache_info
        wrapper.cache_clear = cache_clear
        wrapper.__bytecache_target__ = target
        return wrapper
    # Everything else is a Rust callable: it binds, keys and answers kept
    # results itself, and calls `begin` for the rest.
    wrapper = _bytecache.memoized(func, target, _starter(target, min_seconds), _core.OFF)
    return functools.wraps(func)(wrapper)


def clear_group(target: _core.Target) -> int:
    target.memo.forget()
    return int(_config.store(_config.cache_dir(target.cache_dir)).clear(target.group))


if TYPE_CHECKING:  # the signatures type checkers see; the implementation follows

    @overload
    def memoize(func: Callable[P, R], /) -> Memoized[P, R]: ...
    @overload
    def memoize(
        func: None = None,
        /,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        ignore: tuple[str, ...] | list[str] = (),
        min_seconds: float = 0.0,
    ) -> Callable[[Callable[P, R]], Memoized[P, R]]: ...


def memoize(
    func: Any = None,
    /,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    ignore: tuple[str, ...] | list[str] = (),
    min_seconds: float = 0.0,
) -> Any:
    """Memoize `func` to disk, keyed by its fingerprint and its arguments.

    Use bare (`@memoize`) or with options:
      cache_dir:   where results live (default: see `bytecache.configure`).
      ignore:      parameter names left out of the key (e.g. ``("verbose",)``).
      min_seconds: store a result only when computing it took this long.
    """
    directory = _validate.directory("cache_dir", cache_dir)
    skip = _validate.names("ignore", ignore, what="parameter names")
    seconds = _validate.seconds("min_seconds", min_seconds)

    def decorate(f: Any) -> Any:
        return _wrap(f, cache_dir=directory, ignore=skip, min_seconds=seconds)

    return decorate if func is None else decorate(func)


def clear(func: Any = None, *, cache_dir: str | os.PathLike[str] | None = None) -> int:
    """Drop every stored result, or those of one memoized function. A cache
    directory that does not exist is left alone (nothing to drop)."""
    directory = _config.cache_dir(_validate.directory("cache_dir", cache_dir))
    if func is not None:
        target = getattr(func, "__bytecache_target__", None)
        if target is None:
            raise TypeError("bytecache.clear(func) needs a function decorated with memoize")
        return clear_group(target)
    _bytecache.forget_all()
    if not os.path.isdir(os.path.join(directory, "store")):
        return 0
    return int(_config.store(directory).clear(None))
