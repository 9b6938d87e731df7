"""Decorator-free memoization: ``bytecache.enable()``.

This module is the policy; the Rust hook (``_bytecache.hook_install``) is the
mechanism: a PEP 523 frame hook on 3.11, a function watcher and per-function
vectorcalls on 3.12+ (``_bytecache.hook_mechanism()``), where unmarked code
runs untouched. The hook asks :func:`_should_mark` once per code object whether
its functions are memoized (on 3.12+ when a function is created, and for the
functions that existed before ``enable()``, found by :func:`_adopt_existing`),
and for every call of a marked function passes the bound arguments to
:func:`_on_call`, which delegates to the core API (``bytecache._core.begin``):

* ``None`` from ``_on_call``: run the call normally;
* ``(value,)``: a hit, the frame is skipped and ``value`` returned;
* any other object (a token): run the frame, then ``_on_return(token, box)``
  if it returned normally, ``box`` a one-element list holding the hook's only
  reference to the result (see ``_miss.Miss.commit``). A call that raised just
  drops the token; ``_Token`` aborts the pending miss when it is collected.

Cost-aware: a function whose first :data:`_PROBE_CALLS` calls all took less
than ``min_seconds`` stops being keyed (its code is unmarked), so cheap helpers
called in loops cost only the hook's base overhead.

Nothing here keeps a function alive: a function redefined in a notebook is
collected with its target, its memo and the globals its key read.
"""

from __future__ import annotations

import atexit
import fnmatch
import os
import sys
import threading
import time
import types
import weakref
from collections.abc import Iterable
from typing import Any

from bytecache import _bytecache, _core
from bytecache._config import warn_once

__all__ = ["enable", "disable", "is_enabled"]

#: Calls observed before deciding that a function is too cheap to memoize.
_PROBE_CALLS = 5


_lock = threading.RLock()


class _Config:
    __slots__ = ("patterns", "min_seconds", "cache_dir")

    def __init__(self, patterns: tuple[str, ...], min_seconds: float, cache_dir: str | None):
        self.patterns = patterns
        self.min_seconds = min_seconds
        self.cache_dir = cache_dir


_config: _Config | None = None
_atexit_registered = False
# code object -> [calls seen, slow call seen]; cleared on enable().
_probe: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
# code objects found cheap: never marked again (until enable() is called again).
_cheap: weakref.WeakSet[Any] = weakref.WeakSet()
# function -> (core target, argument names); a target does not hold its function.
_targets: weakref.WeakKeyDictionary[Any, tuple[Any, tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def enable(
    modules: Iterable[str] | str | None = None,
    *,
    min_seconds: float = 0.1,
    cache_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Memoize calls of the functions defined in ``modules`` without decorators.

    ``modules`` are module names or ``fnmatch`` globs (``"pipeline.*"``) matched
    against ``func.__module__`` and ``func.__globals__["__name__"]``; the default
    is ``__main__`` (the running script or the notebook's namespace). Calls that
    take less than ``min_seconds`` are not stored. ``BYTECACHE=off`` in the
    environment makes this a no-op. Where calls cannot be intercepted, a
    ``BytecacheWarning`` is issued once and nothing is installed (the
    ``@bytecache.memoize`` decorator still works).
    """
    global _config, _atexit_registered
    if _core.OFF:
        return
    if isinstance(modules, str):
        modules = [modules]
    patterns = tuple(modules) if modules is not None else ("__main__",)
    with _lock:
        _config = _Config(patterns, float(min_seconds), os.fspath(cache_dir) if cache_dir else None)
        _probe.clear()
        _cheap.clear()
        _targets.clear()
        _bytecache.unregister_all()
        from bytecache import _modkind

        _modkind.mark(tuple(p for p in patterns if p != "__main__"))
        try:
            _bytecache.hook_install(_should_mark, _on_call, _on_return)
        except (AttributeError, RuntimeError, NotImplementedError) as e:
            _config = None
            _warn_unavailable(str(e))
            return
        if _bytecache.hook_mechanism() == "vectorcall":
            _adopt_existing(patterns)
        if not _atexit_registered:
            # Frames run during interpreter shutdown must not reach a
            # half-finalized cache.
            atexit.register(disable)
            _atexit_registered = True


def disable() -> None:
    """Stop memoizing decorator-free calls: every intercepted function runs as
    before ``enable()``."""
    global _config
    with _lock:
        _config = None
        _bytecache.unregister_all()
        from bytecache import _modkind

        _modkind.mark(())
        uninstall = getattr(_bytecache, "hook_uninstall", None)
        if uninstall is not None:
            uninstall()


def is_enabled() -> bool:
    """True while :func:`enable` is in effect."""
    installed = getattr(_bytecache, "hook_installed", None)
    return _config is not None and installed is not None and installed()


# --- callbacks (called by the hook with its re-entry guard set) -------------


def _should_mark(func: Any) -> bool:
    config = _config
    if config is None:
        return False
    code = getattr(func, "__code__", None)
    if code is None or code in _cheap:
        return False
    module = getattr(func, "__module__", None)
    gname = getattr(func, "__globals__", {}).get("__name__")
    if _is_internal(module) or _is_internal(gname):
        return False
    return any(_matches(name, config.patterns) for name in (module, gname))


def _on_call(func: Any, args: tuple[Any, ...]) -> Any:
    config = _config
    if config is None or _core.is_disabled():
        return None
    code = func.__code__
    probe = _probe.get(code)
    if probe is None:
        probe = _probe[code] = [0, False]
    try:
        target, names = _target_and_names(func)
        arguments = dict(zip(names, args, strict=True))
        hit, value = _core.begin(target, arguments, min_seconds=config.min_seconds)
    except Exception as e:  # noqa: BLE001 - a cache failure must not change the program
        _warn_once_internal(e)
        return None
    if hit:
        probe[1] = True  # it was stored, so it was slow once
        return (value,)
    if value is None:
        return None
    return _Token(value, code, probe)


def _on_return(token: Any, box: list[Any]) -> None:
    if type(token) is _Token:
        token.finish(box)


class _Token:
    """A pending miss. ``finish`` commits it; if the call raised, the hook drops
    the token and ``__del__`` aborts the miss."""

    __slots__ = ("miss", "code", "probe", "started")

    def __init__(self, miss: Any, code: Any, probe: list[Any]) -> None:
        self.miss = miss
        self.code = code
        self.probe = probe
        self.started = time.perf_counter()

    def finish(self, box: list[Any]) -> None:
        miss, self.miss = self.miss, None
        elapsed = time.perf_counter() - self.started
        config = _config
        if config is not None and not self.probe[1]:
            self.probe[0] += 1
            if elapsed >= config.min_seconds:
                self.probe[1] = True
            elif self.probe[0] >= _PROBE_CALLS:
                _cheap.add(self.code)
                _bytecache.hook_reset_marks()
        if miss is not None:
            miss.commit(box)

    def __del__(self) -> None:
        miss = self.miss
        if miss is not None:
            self.miss = None
            abort = getattr(miss, "abort", None)
            if abort is not None:
                abort()


# --- functions that existed before enable() (3.12+) ----------------------------


def _adopt_existing(patterns: tuple[str, ...]) -> None:
    """Hand every function defined in a marked module that is already loaded (a
    module imported earlier, a notebook cell run before ``%load_ext``) to the hook:
    module namespaces, the classes defined there (methods, static and class methods,
    properties, nested classes) and ``__wrapped__`` chains."""
    for name, module in list(sys.modules.items()):
        if not _matches(name, patterns) or _is_internal(name):
            continue
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            _adopt_all(list(namespace.values()), name)


def _adopt_all(pending: list[Any], module: str) -> None:
    seen: set[int] = set()
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            _bytecache.hook_adopt(obj)
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                pending.append(wrapped)
        elif isinstance(obj, (staticmethod, classmethod)):
            pending.append(obj.__func__)
        elif isinstance(obj, property):
            pending.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, type) and getattr(obj, "__module__", None) == module:
            pending.extend(vars(obj).values())


# --- helpers -----------------------------------------------------------------


def _target_and_names(func: Any) -> tuple[_core.Target, tuple[str, ...]]:
    cached = _targets.get(func)
    if cached is None:
        config = _config
        cache_dir = config.cache_dir if config is not None else None
        target = _core.Target(func, cache_dir=cache_dir)
        target.memo.register()  # the hook answers kept results itself
        cached = _targets[func] = (target, target.memo.names)
    return cached


def target_for(func: Any) -> _core.Target:
    """The core target of a decorator-free function (for `explain`)."""
    return _target_and_names(func)[0]


def _matches(name: Any, patterns: tuple[str, ...]) -> bool:
    if not isinstance(name, str):
        return False
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def _is_internal(name: Any) -> bool:
    return isinstance(name, str) and (name == "bytecache" or name.startswith("bytecache."))


def _warn_once_internal(e: BaseException) -> None:
    warn_once(f"bytecache: call not memoized ({type(e).__name__}: {e})",
              key=f"auto:{type(e).__name__}")


def _warn_unavailable(reason: str) -> None:
    warn_once(
        f"bytecache.enable() is not available on this interpreter ({reason}); "
        "use the @bytecache.memoize decorator instead",
        key="auto:unavailable",
    )
