"""A miss: the call computed under observation, then stored or refused.

`_core.begin` returns a `Miss` when nothing stored matches; the caller runs
the body and gives the result to `commit` (or calls `abort`). While the body
runs, `_observe` records what it reads and does; at commit the result is
stored with what it depended on (`_deps`) and what a hit replays
(`_effects`), unless the call cannot be keyed or replayed, mutated its
arguments or the globals it reads, returned an object shared with the world
outside it, or its result cannot be pickled. Imported at a process's first
miss: a process that only hits never loads observation.
"""

from __future__ import annotations

import sys
import time

from bytecache import _bytecache, _deps, _effects, _observe
from bytecache._config import warn_once
from bytecache._core import (
    TOTAL,
    Target,
    _ambient,
    _dir_state,
    _file_state,
    _internal,
    _remember_refusal,
    _stats_lock,
)
from bytecache._reasons import (
    ALIASED,
    CHANGED_DURING_CALL,
    CHEAP,
    MUTATED,
    NONDETERMINISTIC,
    STORE_FAILED,
    TOO_LARGE,
    UNPICKLABLE,
    Reason,
    not_stored,
)

TYPE_CHECKING = False  # typing costs ~10 ms to import; only checkers need it

if TYPE_CHECKING:
    from typing import Any


class Miss:
    """A call being computed and observed; `commit` stores its result."""

    __slots__ = ("target", "arguments", "key", "store", "started", "min_seconds", "claim",
                 "manifest", "observation", "rng_arguments")

    def __init__(self, target: Target, arguments: dict[str, Any], key: bytes, store: Any,
                 min_seconds: float, claim: Any = None,
                 manifest: _deps.Manifest | None = None) -> None:
        self.claim = claim
        self.target = target
        self.arguments = arguments
        self.key = key
        self.store = store
        self.min_seconds = min_seconds
        self.manifest = manifest
        _observe.install()  # once per process: a flag after the first miss
        self.rng_arguments = _effects.rng_arguments(arguments)
        self.observation = _observe.Observation()
        # Our own clock reads stay outside the observed window (each one in
        # it is a watched call: a few µs, and not the call's).
        self.started = time.perf_counter()
        self.observation.start()

    def abort(self) -> None:
        self.observation.stop()
        self._release()

    def _release(self) -> None:
        claim, self.claim = self.claim, None
        if claim is not None:
            claim.release()

    def commit(self, box: list[Any]) -> None:
        """Stores `box[0]`, the call's result; the caller holds no other
        reference to it (see `_shared`)."""
        try:
            self._commit(box)
        finally:
            self._release()  # after the put: waiters then find the entry

    def _commit(self, box: list[Any]) -> None:
        shared = _shared(box, self.arguments)  # before anything else holds the result
        recorder = self.observation.stop()
        elapsed = time.perf_counter() - self.started
        t = self.target
        if elapsed < self.min_seconds:
            _remember_refusal(t, self.key, [Reason(CHEAP, f"{elapsed:.3g}")])
            return
        reasons = list(recorder.refusals)
        if shared is not None:
            reasons.append(shared)
        changed = self.observation.changed_during_call()
        if changed is not None:
            reasons.append(changed)
        record: list[Any] = []
        if not reasons:
            try:
                # Modules the call imported are keyed as before (not loaded):
                # an import is not a mutation.
                after, record = t.memo.key(self.arguments, record=True, before=self.key)
            except _bytecache.UnhashableError:
                after = None
            if after != self.key and not _effects.rng_arguments_only(
                    self.rng_arguments, recorder, lambda: t.memo.key(self.arguments), self.key):
                reasons.append(Reason(MUTATED, "its arguments or the globals it reads"))
        if reasons:
            _not_stored(t, self.store, self.key, reasons, self.manifest, record)
            return
        self._store(box[0], recorder, record, elapsed)

    def _store(self, result: Any, recorder: _observe.Recorder, record: list[Any],
               elapsed: float) -> None:
        import pickle

        t = self.target
        ambient = _ambient(t)
        items, values = _deps.observed(recorder, ambient)
        effects = recorder.effects or None
        buffers: list[pickle.PickleBuffer] = []
        try:
            payload = pickle.dumps((result, effects), protocol=5, buffer_callback=buffers.append)
        except Exception as e:  # noqa: BLE001 - any pickling failure means "don't store"
            _not_stored(t, self.store, self.key, [Reason(UNPICKLABLE, str(e))], self.manifest,
                        record)
            return
        # Modules the call imported are in the key by their code: their files
        # are not data it read.
        code = {display for kind, _, display, _ in record if kind == "module"}
        read = [p for p, s in recorder.files.items() if s is not None and p not in code]
        files = [s for s in map(_file_state, read) if s is not None]
        dirs = [s for s in map(_dir_state, recorder.dirs) if s is not None]
        if len(files) != len(read) or len(dirs) != len(recorder.dirs):
            gone = next(p for p in read + list(recorder.dirs)
                        if (_file_state(p) if p in read else _dir_state(p)) is None)
            _not_stored(t, self.store, self.key,
                        [Reason(CHANGED_DURING_CALL, _observe._shown(gone))], self.manifest, record)
            return
        covered = [(kind, name, display, bytes.fromhex(digest))
                   for kind, name, display, digest in record]
        raws = [b.raw() for b in buffers]
        keyed = bool(items) or self.manifest is not None
        where = _deps.subkey(self.key, items, values) if keyed else self.key
        # Items the fingerprint alone implies (`ambient`) need no manifest: a
        # lookup computes them. Items known only from running do.
        manifested = self.manifest is not None or items != _deps.state_items(ambient)
        try:
            stored = _internal(self.store.put, where, t.group, payload, raws, files, dirs,
                               covered, elapsed)
            if stored and keyed and manifested:
                manifest = self.manifest or _deps.Manifest()
                manifest.add(items, values)
                _internal(self.store.put, self.key, t.group, manifest.encode(), [], [], [],
                          covered, elapsed)
        except Exception as e:  # noqa: BLE001 - a full disk or read-only dir must not break the call
            warn_once(f"bytecache could not store a result ({e}); continuing without caching",
                      key=f"put:{type(e).__name__}")
            _remember_refusal(t, self.key, [Reason(STORE_FAILED, str(e))])
            return
        if not stored:
            size = len(payload) + sum(r.nbytes for r in raws)
            _not_stored(t, self.store, self.key, [Reason(TOO_LARGE, str(size))], None, record)
            return
        t.refused.pop(self.key, None)
        t.memo.reused()
        if not (keyed or files or dirs or effects):
            t.memo.remember(self.key, result, elapsed)
        with _stats_lock:
            t.counters.stored += 1
            TOTAL.stored += 1


# Types whose sharing cannot be observed (values), and types checked but not
# walked into; rebuilt when modules are loaded.
_alias_types: tuple[int, tuple[type, ...], tuple[type, ...]] = (-1, (), ())

_IMMUTABLE = (
    ("datetime", ("date", "time", "timedelta", "tzinfo")),
    ("decimal", ("Decimal",)),
    ("fractions", ("Fraction",)),
    ("uuid", ("UUID",)),
    ("pathlib", ("PurePath",)),
    ("re", ("Pattern",)),
    ("enum", ("Enum",)),
    ("numpy", ("generic", "dtype")),
    ("pandas", ("Index", "Timestamp", "Timedelta", "Period", "Interval", "DateOffset")),
)


def _types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    global _alias_types
    n = len(sys.modules)
    if _alias_types[0] == n:
        return _alias_types[1], _alias_types[2]
    immutable: list[type] = []
    for module, names in _IMMUTABLE:
        m = sys.modules.get(module)
        for name in names if m is not None else ():
            t = getattr(m, name, None)
            if isinstance(t, type):
                immutable.append(t)
    opaque: list[type] = []
    pd = sys.modules.get("pandas")
    if pd is not None and _copy_on_write(pd):
        # Under copy-on-write, data shared between pandas objects cannot be
        # observed: check the objects, not their blocks.
        for name in ("DataFrame", "Series", "Index"):
            t = getattr(pd, name, None)
            if isinstance(t, type):
                opaque.append(t)
    _alias_types = (n, tuple(opaque), tuple(immutable))
    return _alias_types[1], _alias_types[2]


def _copy_on_write(pd: Any) -> bool:
    try:
        if int(str(pd.__version__).split(".")[0]) >= 3:
            return True
        return bool(pd.options.mode.copy_on_write is True)
    except Exception:  # noqa: BLE001 - unknown pandas: walk into it
        return False


def _shared(box: list[Any], arguments: dict[str, Any]) -> Reason | None:
    """Why the result in `box` cannot be stored because it shares a mutable
    object with what existed before (see `src/alias.rs`), or None."""
    opaque, immutable = _types()
    try:
        found = _bytecache.shared_object(box, opaque, immutable)
    except Exception as e:  # noqa: BLE001 - a result we cannot walk: do not trust a copy
        return Reason(ALIASED, f"could not be checked for shared objects ({e})")
    if found is None:
        return None
    if isinstance(found, str):
        return Reason(NONDETERMINISTIC, f"a memory address (a default repr in {found!r})")
    if not isinstance(found, tuple):
        return Reason(ALIASED, "is too large to check for shared objects")
    obj = found[0]
    verb = "is" if obj is box[0] else "holds"
    for name, value in arguments.items():
        if value is obj:
            return Reason(ALIASED, f"{verb} argument `{name}` itself")
    return Reason(ALIASED, f"{verb} a `{type(obj).__qualname__}` that is also referenced "
                           "from outside the result (an argument, a global or a cache)")


def _not_stored(t: Target, store: Any, key: bytes, reasons: list[Reason],
                manifest: _deps.Manifest | None, record: list[Any]) -> None:
    """The call ran and its result is not stored: count, warn once, and keep
    the reasons where `explain()` finds them (this process, and the store)."""
    with _stats_lock:
        t.counters.uncacheable += 1
        TOTAL.uncacheable += 1
    _remember_refusal(t, key, reasons)
    name = t.qualname
    warn_once(not_stored(reasons, name),
              key=f"refused:{name}:" + ",".join(r.kind + r.detail for r in reasons))
    m = manifest or _deps.Manifest()
    if [r.kind for r in m.refused] == [r.kind for r in reasons]:
        return
    m.refused = reasons
    covered = [(kind, n, display, bytes.fromhex(digest)) for kind, n, display, digest in record]
    try:
        _internal(store.put, key, t.group, m.encode(), [], [], [], covered, 0.0)
    except Exception:  # noqa: BLE001 - informational only
        pass
