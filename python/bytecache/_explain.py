"""`bytecache.explain(f, *args, **kwargs)`: would this call hit, and if not, why."""

from __future__ import annotations

import os

from bytecache import _bytecache, _config, _core

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What an unhashable argument is, in words a user recognizes.
_KINDS = (
    ("TextIOWrapper", "an open file"),
    ("BufferedReader", "an open file"),
    ("BufferedWriter", "an open file"),
    ("FileIO", "an open file"),
    ("lock", "a lock"),
    ("generator", "a generator"),
    ("socket", "a socket"),
)


def _unhashable(message: str) -> str:
    if message.startswith("argument `"):
        name = message.split("`")[1]
        for marker, words in _KINDS:
            if marker in message:
                return f"not memoized: argument `{name}` is {words}"
    return f"not memoized: {message}"


def _target(func: Any) -> _core.Target:
    target = getattr(func, "__bytecache_target__", None)
    if target is None:
        from bytecache import _auto

        target = _auto.target_for(func)
    return target


def _short(name: str) -> str:
    return name.split(".", 1)[1] if name.startswith("__main__.") else name


def _diff(old: list[list[Any]], new: list[list[Any]]) -> list[str]:
    before = {(k, n): (disp, d) for k, n, disp, d in old}
    after = {(k, n): (disp, d) for k, n, disp, d in new}
    reasons = []
    for (kind, name), (disp, digest) in after.items():
        prev = before.get((kind, name))
        if prev is not None and prev[1] == digest:
            continue
        if kind == "function":
            where = f" in {disp}" if disp else ""
            state = "changed" if prev is not None else "is new"
            reasons.append(f"function `{_short(name)}`{where} {state}")
        elif kind == "global":
            if prev is not None and prev[0] is not None and disp is not None:
                reasons.append(f"global `{_short(name)}`: {prev[0]} → {disp}")
            else:
                state = "changed" if prev is not None else "is new"
                reasons.append(f"global `{_short(name)}` {state}")
        elif kind == "module":
            state = "changed" if prev is not None else "is new"
            reasons.append(f"module `{name}` (imported in the body, not loaded yet) {state}")
        elif kind == "patch":
            state = "replaced by something else" if prev is not None else "replaced"
            reasons.append(f"library attribute `{name}` {state}")
        else:
            reasons.append(f"argument `{name}` changed")
    for kind, name in before:
        if (kind, name) in after or kind == "argument":
            continue
        if kind == "patch":
            reasons.append(f"library attribute `{name}` is no longer replaced")
        else:
            reasons.append(f"{kind} `{_short(name)}` is no longer used")
    return reasons


def explain(func: Any, *args: Any, **kwargs: Any) -> str:
    """'hit', or 'miss: <why>', or 'not memoized: <why>' for `func(*args, **kwargs)`.

    Nothing is computed and nothing is stored.
    """
    import inspect

    target = _target(func)
    bound = inspect.signature(target.func).bind(*args, **kwargs)
    bound.apply_defaults()
    try:
        key, record = _bytecache.call_key(target.func, dict(bound.arguments), target.ignore,
                                          record=True)
    except _bytecache.UnhashableError as e:
        return _unhashable(str(e))
    directory = _config.cache_dir(target.cache_dir)
    if not os.path.isdir(directory):
        return "miss: nothing is stored yet"
    store = _config.store(directory)
    entry = store.get(key)
    if entry is not None:
        why = _core.deps_valid(entry[2], entry[3])
        return "hit" if why is None else f"miss: {why}"
    group = target.group.hex()
    mine = [e for e in store.entries() if e["group"] == group]
    qualname = getattr(target.func, "__qualname__", "?")
    if not mine:
        return f"miss: `{qualname}` was never computed"
    latest = max(mine, key=lambda e: e["created"])
    old = store.record(bytes.fromhex(latest["key"])) or []
    reasons = _diff(old, [list(r) for r in record])
    if not reasons:
        return f"miss: `{qualname}` changed"
    return "miss: " + "; ".join(reasons)
