"""What a stored result depends on beyond its key, and how it is keyed.

A call's key covers its code and arguments. What a miss reads at run time
(environment variables by name, paths it probes or finds absent, the working
directory, interpreter-wide state such as `sys.argv` or the `decimal`
context, the state of the global random generators) is known only after it
ran. Those are *items*: `("env", name)`, `("probe", path, aspect)`,
`("state", name)`, `("rng", name)`, each with a value.

Stored layout: at the call's key `K`, a small *manifest* lists the item sets
that misses of this call have depended on; the result is stored at
`subkey(K, items, values)`. A lookup computes each set's values now and
looks for that subkey, so several versions (argv A, argv B) live side by
side. A call with no items is stored at `K` itself, as before. Files read in
full stay validated by content in the entry (see `_core.deps_valid`).
"""

from __future__ import annotations

import os
import sys

from bytecache import _bytecache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bytecache import _observe
    from bytecache._reasons import Reason

    Item = tuple[str, ...]

MAGIC = _bytecache.MANIFEST_MAGIC


# --- interpreter-wide state ----------------------------------------------------


def _argv() -> Any:
    return tuple(map(str, sys.argv))


def _cwd() -> Any:
    _bytecache.observe_internal(True)
    try:
        return os.getcwd()
    except OSError:
        return None
    finally:
        _bytecache.observe_internal(False)


def _locale() -> Any:
    import locale

    _bytecache.observe_internal(True)
    try:
        return locale.setlocale(locale.LC_ALL)
    finally:
        _bytecache.observe_internal(False)


def _decimal() -> Any:
    import decimal

    c = decimal.getcontext()
    traps = tuple(sorted(t.__name__ for t, on in c.traps.items() if on))
    return (c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp, traps)


def _np_printoptions() -> Any:
    np = sys.modules.get("numpy")
    if np is None:
        return None
    return tuple(sorted((k, repr(v)) for k, v in np.get_printoptions().items()))


def _np_errstate() -> Any:
    np = sys.modules.get("numpy")
    if np is None:
        return None
    return tuple(sorted(np.geterr().items()))


#: Interpreter-wide state a call can read without naming it, by name: how to
#: read it now.
STATE = {
    "argv": _argv,
    "cwd": _cwd,
    "locale": _locale,
    "decimal": _decimal,
    "numpy.printoptions": _np_printoptions,
    "numpy.errstate": _np_errstate,
}

#: Libraries whose code reads interpreter-wide state: a call that reaches one
#: (its fingerprint names it) depends on that state. `sys` counts for `argv`
#: only when the code names `argv` (see `_core`).
LIBRARY_STATE = {
    "argparse": ("argv",),
    "getopt": ("argv",),
    "optparse": ("argv",),
    "click": ("argv",),
    "typer": ("argv",),
    "absl": ("argv",),
    "fire": ("argv",),
    "decimal": ("decimal",),
    "_decimal": ("decimal",),
    "_pydecimal": ("decimal",),
    "numpy": ("numpy.printoptions", "numpy.errstate"),
    "pandas": ("numpy.printoptions", "numpy.errstate"),
    "locale": ("locale",),
}


# --- items and their values ----------------------------------------------------


def aspect_value(state: Any, aspect: str) -> Any:
    """What a probe of `aspect` saw of a path in `state` (see
    `_observe.path_state`)."""
    if aspect == "exists":
        return state is not None
    if aspect == "resolves":  # the state is where the named path led
        return state
    if state is None:
        return None
    kind, size, mtime = state
    if aspect == "type":
        return kind
    if aspect == "size":
        return size
    if aspect == "mtime":
        return mtime
    return state


def value_now(item: Item) -> Any:
    kind = item[0]
    if kind == "state":
        read = STATE.get(item[1])
        return read() if read is not None else None
    # The other items are read with observation's own readers, loaded here
    # (a process that only hits never loads observation otherwise).
    from bytecache import _observe

    if kind == "env":
        if item[1] == "*":
            return _environment()
        return _observe.env_value(item[1])
    if kind == "probe":
        if item[2] == "resolves":
            return _observe.resolved_now(item[1])
        return aspect_value(_observe.path_state(item[1]), item[2])
    if kind == "rng":
        raw = _observe.rng_raw(item[1])
        return _bytecache.hash_value(raw) if raw is not None else None
    return None


def _environment() -> Any:
    _bytecache.observe_internal(True)
    try:
        return tuple(sorted((k, v) for k, v in os.environ.items()
                            if not k.startswith("BYTECACHE")))
    finally:
        _bytecache.observe_internal(False)


def observed(recorder: _observe.Recorder, ambient: tuple[str, ...]) -> tuple[
        tuple[Item, ...], tuple[Any, ...]]:
    """The items a miss depended on and the values it saw, sorted. `ambient`:
    state names its fingerprint reaches (see `LIBRARY_STATE`)."""
    pairs: dict[Item, Any] = {}
    for name, value in recorder.env.items():
        pairs[("env", name)] = _environment() if name == "*" else value
    for (path, aspect), state in recorder.probes.items():
        pairs[("probe", path, aspect)] = aspect_value(state, aspect)
    for path, state in recorder.files.items():
        if state is None:  # opened but absent: valid while it stays absent
            pairs[("probe", path, "exists")] = False
    for name in recorder.state:
        if name in STATE:
            pairs[("state", name)] = (recorder.cwd or "") if name == "cwd" else STATE[name]()
    for item in recorder.inherited:
        if item not in pairs:
            pairs[item] = value_now(item)
    for name in ambient:
        if ("state", name) not in pairs:
            pairs[("state", name)] = STATE[name]()
    for name, raw in recorder.rng.items():
        if raw:  # b"": reseeded before any draw, so its start is not an input
            pairs[("rng", name)] = _bytecache.hash_value(raw)
    items = tuple(sorted(pairs, key=repr))
    return items, tuple(pairs[i] for i in items)


def state_items(names: tuple[str, ...]) -> tuple[Item, ...]:
    """The items of interpreter-wide state `names`, in `observed`'s order."""
    return tuple(sorted((("state", n) for n in names), key=repr))


def subkey(key: bytes, items: tuple[Item, ...], values: tuple[Any, ...]) -> bytes:
    """Where the result of `key` with these item values is stored."""
    return bytes(_bytecache.hash_value((key, items, values)))


def values_now(items: tuple[Item, ...]) -> tuple[Any, ...]:
    return tuple(value_now(i) for i in items)


def files_absent(recorder: _observe.Recorder) -> list[str]:
    return [p for p, s in recorder.files.items() if s is None]


# --- manifests -----------------------------------------------------------------


class Manifest:
    """What is stored at a call's key when its results depend on items:
    the item sets seen (each with the values of its latest store) and why
    the latest miss was not stored, if it was not."""

    __slots__ = ("sets", "refused")

    def __init__(self) -> None:
        self.sets: list[tuple[tuple[Item, ...], tuple[Any, ...]]] = []
        self.refused: list[Reason] = []

    def add(self, items: tuple[Item, ...], values: tuple[Any, ...]) -> None:
        self.sets = [(i, v) for i, v in self.sets if i != items]
        self.sets.insert(0, (items, values))
        del self.sets[8:]  # the eight most recent item sets
        self.refused = []

    def encode(self) -> bytes:
        import pickle

        return MAGIC + pickle.dumps((self.sets, self.refused), protocol=5)

    @staticmethod
    def decode(payload: Any) -> Manifest | None:
        """The manifest in a stored payload, or None for a result."""
        head = bytes(memoryview(payload)[:len(MAGIC)])
        if head != MAGIC:
            return None
        import pickle

        m = Manifest()
        m.sets, m.refused = pickle.loads(memoryview(payload)[len(MAGIC):])
        return m
