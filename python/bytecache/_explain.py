"""`bytecache.explain(f, *args, **kwargs)`: would this call hit, and if not, why.

Built on structured reasons (`_reasons.Reason`): what a stored result depends
on (`_deps`), why a miss was not stored (kept in this process and in the
store), and, when nothing matches, a comparison with the stored entry of the
same function that this call comes closest to.
"""

from __future__ import annotations

import os

from bytecache import _bytecache, _config, _core, _deps
from bytecache._reasons import (
    ARGUMENT_CHANGED,
    DEPENDENCY_CHANGED,
    FUNCTION_CHANGED,
    GLOBAL_CHANGED,
    MODULE_CHANGED,
    NEVER_COMPUTED,
    NO_LONGER_USED,
    PATCHED,
    UNPATCHED,
    Reason,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: What an unhashable argument is, by `UnhashableError.kind`, in words a user
#: recognizes.
_KINDS = {
    "open_file": "an open file",
    "lock": "a lock",
    "generator": "a generator",
    "socket": "a socket",
}


def _kind_of(value: Any) -> str | None:
    """Words for a value that cannot be hashed by content, by its type."""
    import io
    import socket
    import threading
    import types

    if isinstance(value, io.IOBase):
        return _KINDS["open_file"]
    if isinstance(value, (type(threading.Lock()), type(threading.RLock()))):
        return _KINDS["lock"]
    if isinstance(value, types.GeneratorType):
        return _KINDS["generator"]
    if isinstance(value, socket.socket):
        return _KINDS["socket"]
    return None


def _target(func: Any) -> _core.Target | None:
    target = getattr(func, "__bytecache_target__", None)
    if target is not None:
        return target  # type: ignore[no-any-return]
    from bytecache import _auto

    if not _auto.is_enabled() or not hasattr(func, "__code__") or not _auto._should_mark(func):
        return None
    return _auto.target_for(func)


def _short(name: str) -> str:
    return name.split(".", 1)[1] if name.startswith("__main__.") else name


def _diff(old: list[list[Any]], new: list[list[Any]]) -> list[Reason]:
    before = {(k, n): (disp, d) for k, n, disp, d in old}
    after = {(k, n): (disp, d) for k, n, disp, d in new}
    reasons = []
    for (kind, name), (disp, digest) in after.items():
        prev = before.get((kind, name))
        if prev is not None and prev[1] == digest:
            continue
        if kind == "function":
            reasons.append(Reason(FUNCTION_CHANGED, _short(name), extra=(disp, prev is None)))
        elif kind == "global":
            if prev is not None and prev[0] is not None and disp is not None:
                reasons.append(Reason(GLOBAL_CHANGED, f"global `{_short(name)}`",
                                      extra=(prev[0], disp)))
            else:
                reasons.append(Reason(GLOBAL_CHANGED, f"global `{_short(name)}`"))
        elif kind == "module":
            reasons.append(Reason(MODULE_CHANGED, name, extra=prev is None))
        elif kind == "patch":
            reasons.append(Reason(PATCHED, name, extra=prev is None))
        else:
            reasons.append(Reason(ARGUMENT_CHANGED, name))
    for kind, name in before:
        if (kind, name) in after or kind == "argument":
            continue
        if kind == "patch":
            reasons.append(Reason(UNPATCHED, name))
        else:
            reasons.append(Reason(NO_LONGER_USED, f"{kind} `{_short(name)}`"))
    return reasons


def _item_words(item: tuple[Any, ...]) -> str:
    kind = item[0]
    if kind == "env":
        return "the environment" if item[1] == "*" else f"environment variable {item[1]}"
    if kind == "probe":
        from bytecache import _observe

        aspect = {"exists": "whether it exists", "resolves": "where the link leads"}.get(
            item[2], item[2])
        return f"{_observe._shown(item[1])} ({aspect})"
    if kind == "state":
        return str({"argv": "sys.argv", "cwd": "the working directory", "locale": "the locale",
                "decimal": "the decimal context", "numpy.printoptions": "numpy's print options",
                "numpy.errstate": "numpy's error state"}.get(item[1], item[1]))
    if kind == "rng":
        return f"the state of the global `{item[1]}` generator"
    return repr(item)


def _value_words(item: tuple[Any, ...], value: Any) -> str:
    if item[0] == "rng":
        return "…"
    if item[0] == "probe" and item[2] == "exists":
        return "exists" if value else "absent"
    if item[0] == "probe" and item[2] == "resolves" and isinstance(value, str):
        from bytecache import _observe

        return _observe._shown(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dependency_reasons(items: tuple[Any, ...], stored: tuple[Any, ...]) -> list[Reason]:
    reasons = []
    for item, old in zip(items, stored, strict=True):
        new = _deps.value_now(item)
        if new != old:
            reasons.append(Reason(DEPENDENCY_CHANGED, _item_words(item),
                                  extra=(_value_words(item, old), _value_words(item, new))))
    return reasons


def _miss(reasons: list[Reason]) -> str:
    return "miss: " + "; ".join(r.text() for r in reasons)


def _not_stored(reasons: list[Reason]) -> str:
    return "miss: not stored last time: " + "; ".join(r.text() for r in reasons)


def explain(func: Any, *args: Any, **kwargs: Any) -> str:
    """'hit', or 'miss: <why>', or 'not memoized: <why>' for `func(*args, **kwargs)`.

    Nothing is computed and nothing is stored.
    """
    import inspect

    name = getattr(func, "__qualname__", None) or repr(func)
    if _core.OFF:
        return "not memoized: bytecache is off (BYTECACHE=off in the environment)"
    if _bytecache.is_disabled():
        return "not memoized: inside `bytecache.disabled()`"
    target = _target(func)
    if target is None:
        return (f"not memoized: `{name}` is neither decorated with @bytecache.memoize nor "
                "defined in a module marked by bytecache.enable()")
    refusals, left = target.memo.backoff
    if left:
        latest = _core.latest_refusal(target)
        said = f" (the latest: {'; '.join(r.text() for r in latest)})" if latest else ""
        return (f"not memoized for now: its last {refusals} calls could not be stored{said}; "
                f"the next {left} calls run as they are, then one is tried again")
    bound = inspect.signature(target.func).bind(*args, **kwargs)
    bound.apply_defaults()
    try:
        key, record = _bytecache.call_key(target.func, dict(bound.arguments), target.ignore,
                                          record=True)
    except _bytecache.UnhashableError as e:
        kind = getattr(e, "kind", None)
        location = getattr(e, "location", None)
        if kind in _KINDS and location:
            return f"not memoized: argument `{location[0][1]}` is {_KINDS[kind]}"
        for arg, value in bound.arguments.items():
            words = _kind_of(value)
            if words is not None:
                return f"not memoized: argument `{arg}` is {words}"
        return f"not memoized: {e}"
    directory = _config.cache_dir(target.cache_dir)
    if not os.path.isdir(directory):
        return "miss: nothing is stored yet"
    store = _config.store(directory)
    entry = _core._get(store, key)
    refused = target.refused.get(key)
    if entry is not None:
        manifest = _deps.Manifest.decode(entry[0])
        if manifest is None:
            why = _core.deps_valid(entry[2], entry[3])
            return "hit" if why is None else _miss([why])
        return _explain_manifest(store, key, manifest, refused)
    items = _deps.state_items(_core._ambient(target))
    if items:
        entry = _core._get(store, _deps.subkey(key, items, _deps.values_now(items)))
        if entry is not None:
            why = _core.deps_valid(entry[2], entry[3])
            return "hit" if why is None else _miss([why])
    if refused:
        return _not_stored(refused)
    return _closest(store, target, name, record)


def _explain_manifest(store: Any, key: bytes, manifest: _deps.Manifest,
                      refused: list[Reason] | None) -> str:
    best: list[Reason] | None = None
    for items, stored in manifest.sets:
        where = _deps.subkey(key, items, _deps.values_now(items))
        entry = _core._get(store, where)
        if entry is not None:
            why = _core.deps_valid(entry[2], entry[3])
            if why is None:
                return "hit"
            return _miss([why])
        reasons = _dependency_reasons(items, stored)
        if reasons and (best is None or len(reasons) < len(best)):
            best = reasons
    if refused or manifest.refused:
        return _not_stored(refused or manifest.refused)
    if best:
        return _miss(best)
    return "miss: the stored result was evicted"


def _closest(store: Any, target: _core.Target, name: str, record: list[Any]) -> str:
    """Compares with the stored entry of this function this call comes
    closest to (most covered parts with the same digest)."""
    group = target.group.hex()
    mine = [e for e in store.entries() if e["group"] == group]
    if not mine:
        return _miss([Reason(NEVER_COMPUTED, name)])
    new = [list(r) for r in record]
    now = {(k, n): d for k, n, _, d in new}
    best = None
    best_score = (-1, 0.0)
    for e in mine:
        old = store.record(bytes.fromhex(e["key"])) or []
        score = sum(1 for k, n, _, d in old if now.get((k, n)) == d)
        if (score, e["created"]) > best_score:
            best, best_score = old, (score, e["created"])
    reasons = _diff(best or [], new)
    if not reasons:
        return _miss([Reason(NEVER_COMPUTED, name, extra=True)])
    return _miss(reasons)
