"""Keep-identity ("define once"): re-executing an unchanged definition keeps
the previous object, so stateful decorators (numba.jit, functools.lru_cache)
keep their state; a changed definition replaces it."""

from __future__ import annotations

import sys

from bytecache import _bytecache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def same_definition(old: Any, new: Any) -> bool:
    """True when `old` and `new` are the same code reaching the same things."""
    if old is new or type(old) is not type(new):
        return old is new
    try:
        return _bytecache.hash_value(old) == _bytecache.hash_value(new)
    except Exception:  # noqa: BLE001 - unhashable: the new definition wins
        return False


def once(obj: Any) -> Any:
    """Decorator: keep the object already bound to this name if the new
    definition is the same (`@bytecache.once` above `@functools.lru_cache`
    keeps the cache across re-running a notebook cell)."""
    name = getattr(obj, "__name__", None)
    namespace = sys._getframe(1).f_globals
    prev = namespace.get(name) if isinstance(name, str) else None
    if prev is not None and same_definition(prev, obj):
        return prev
    return obj


def _is_definition(value: Any) -> bool:
    return callable(value) and (hasattr(value, "__code__") or hasattr(value, "__wrapped__"))


def snapshot(namespace: dict[str, Any]) -> dict[str, Any]:
    """The definitions bound in a namespace, before code re-runs in it."""
    return {k: v for k, v in namespace.items() if not k.startswith("_") and _is_definition(v)}


def restore_unchanged(namespace: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """After code ran: put back the previous object for every definition that
    was re-created unchanged. Returns the names kept."""
    kept = []
    for name, old in before.items():
        new = namespace.get(name)
        if new is not None and new is not old and _is_definition(new) and same_definition(old, new):
            namespace[name] = old
            kept.append(name)
    return kept
