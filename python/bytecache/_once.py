"""Keep-identity ("define once"): re-executing an unchanged definition keeps
the previous object, so stateful decorators (numba.jit, functools.lru_cache)
keep their state; a changed definition replaces it.

"Unchanged" compares digests taken when each definition ran, never the old
object hashed again now: a global the old object read may have changed since
(its state was computed with the old value), so the new digest must equal the
one recorded when the kept object was made. A definition that cannot be
hashed is never kept.
"""

from __future__ import annotations

import sys

from bytecache import _bytecache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


class Definitions:
    """The digest each definition had when it was made, by object."""

    def __init__(self) -> None:
        self._digests: dict[int, tuple[Any, bytes]] = {}

    def keep(self, namespace: dict[str, Any], name: str, new: T, digest: bytes | None) -> T:
        """`namespace[name]` when it was recorded with `digest`, else `new`
        (recorded for the next time)."""
        prev = namespace.get(name)
        if prev is not None and prev is not new and digest is not None:
            entry = self._digests.get(id(prev))
            if entry is not None and _deref(entry[0]) is prev and entry[1] == digest:
                return prev  # type: ignore[no-any-return]
        if digest is not None:
            self._record(new, digest)
        return new

    def _record(self, obj: Any, digest: bytes) -> None:
        import weakref

        key = id(obj)
        try:
            ref: Any = weakref.ref(obj, lambda _: self._digests.pop(key, None))
        except TypeError:  # not weakly referenceable: held (definitions are few)
            ref = obj
        self._digests[key] = (ref, digest)


def _deref(ref: Any) -> Any:
    import weakref

    return ref() if type(ref) is weakref.ReferenceType else ref


def digest(obj: object) -> bytes | None:
    """The content hash of a definition, None when it cannot be hashed."""
    try:
        return _bytecache.hash_value(obj)
    except Exception:  # noqa: BLE001 - unhashable: the new definition wins
        return None


_ONCE = Definitions()


def once(obj: T) -> T:
    """Decorator: keep the object already bound to this name if the new
    definition is the same (`@bytecache.once` above `@functools.lru_cache`
    keeps the cache across re-running a notebook cell)."""
    name = getattr(obj, "__name__", None)
    if not isinstance(name, str):
        return obj
    return _ONCE.keep(sys._getframe(1).f_globals, name, obj, digest(obj))
