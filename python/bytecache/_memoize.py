"""`@bytecache.memoize`: persistent memoization of one function."""

from __future__ import annotations

import os

from bytecache import _bytecache, _config, _core, _validate

TYPE_CHECKING = False  # typing costs ~10 ms to import; only checkers need it

if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable
    from typing import Any, overload

    from bytecache._types import CacheInfo, Memoized, P, R


def _binder(sig: inspect.Signature) -> Any:
    """A function (args, kwargs) -> {name: value} with defaults applied.

    Plain positional calls of functions without *args/**kwargs/keyword-only
    parameters take a fast path; everything else goes through
    `Signature.bind`, so both give the same dict for the same call.
    """
    import inspect

    params = list(sig.parameters.values())
    simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
    names = tuple(p.name for p in params)
    empty = inspect.Parameter.empty
    required = sum(p.default is empty for p in params)
    # For n positional arguments: the defaults of the parameters after them.
    tails = [{p.name: p.default for p in params[n:]} for n in range(len(params) + 1)]

    def slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    if not simple:
        return slow

    def fast(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        n = len(args)
        try:
            tail = tails[n]
            out = {names[i]: args[i] for i in range(n)}
        except IndexError:  # too many arguments (or a patched `len`)
            return slow(args, kwargs)
        if kwargs or n < required or any(d is empty for d in tail.values()):
            return slow(args, kwargs)
        out.update(tail)
        return out

    return fast


def _run(token: _core.Miss | None, func: Any, args: tuple[Any, ...],
         kwargs: dict[str, Any]) -> Any:
    """Runs the body after a miss and stores its result (an exception is
    never cached: the pending miss is aborted)."""
    if token is None:
        return func(*args, **kwargs)
    try:
        box = [func(*args, **kwargs)]  # the only reference this frame holds
    except BaseException:
        token.abort()
        raise
    token.commit(box)
    return box[0]


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


def _wrap(func: Any, *, cache_dir: str | None, ignore: tuple[str, ...], min_seconds: float) -> Any:
    import functools
    import inspect

    if isinstance(func, (staticmethod, classmethod)):
        inner = _wrap(func.__func__, cache_dir=cache_dir, ignore=ignore, min_seconds=min_seconds)
        return type(func)(inner)
    if not callable(func) or not hasattr(func, "__code__"):
        raise TypeError(f"bytecache.memoize needs a Python function, not {type(func).__name__}")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"bytecache.memoize cannot memoize generator function `{func.__qualname__}`: "
            "its result is consumed lazily; memoize a function that returns a list instead"
        )
    sig = inspect.signature(func)
    bind = _binder(sig)
    unknown = set(ignore) - set(sig.parameters)
    if unknown:
        raise TypeError(f"ignore= names no parameter of `{func.__qualname__}`: {sorted(unknown)}")
    target = _core.Target(func, ignore=ignore, cache_dir=cache_dir)
    quick = target.memo.quick

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            kept = quick(args, kwargs)
            if isinstance(kept, tuple):
                return kept[0]
            hit, token = await _begin_async(target, bind(args, kwargs), min_seconds, kept)
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

        wrapper: Any = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            kept = quick(args, kwargs)  # a result kept in this process, or the key
            if isinstance(kept, tuple):
                return kept[0]
            hit, token = _core.begin(target, bind(args, kwargs), min_seconds=min_seconds, key=kept)
            if hit:
                return token
            return _run(token, func, args, kwargs)

        wrapper = sync_wrapper

    def cache_info() -> CacheInfo:
        """Hits, misses and time saved for this function in this process."""
        return target.counters.as_dict()  # type: ignore[return-value]

    def cache_clear() -> int:
        """Drop this function's stored results (all versions)."""
        return clear_group(target)

    wrapper.cache_info = cache_info
    wrapper.cache_clear = cache_clear
    wrapper.__bytecache_target__ = target
    return wrapper


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
