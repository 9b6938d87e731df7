"""Why a call was not stored, or why a stored result was not used: a kind
plus a location, mapped to words once (`text`). Everything that decides
carries a `Reason`; `explain()`, warnings and `stats()` only render them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Kinds of "not stored" (the call ran and its result was not kept).
NONDETERMINISTIC = "nondeterministic"  # detail: the source ("time.time")
SUBPROCESS = "subprocess"  # detail: the command
WROTE = "wrote"  # detail: the path
CHANGED_DURING_CALL = "changed_during_call"  # detail: what (a path)
MUTATED = "mutated"  # detail: what ("its arguments or the globals it reads")
ALIASED = "aliased"  # detail: which object
EFFECT = "effect"  # detail: the effect ("changes the working directory")
UNPICKLABLE = "unpicklable"  # detail: the error
TOO_LARGE = "too_large"  # detail: size in bytes
UNHASHABLE = "unhashable"  # detail: the UnhashableError message; extra: kind, location
STORE_FAILED = "store_failed"  # detail: the error
CHEAP = "cheap"  # detail: seconds (below min_seconds)
UNOBSERVED = "unobserved"  # detail: what bytecache failed to observe (its own error)

# Kinds of "stored, but not used now" (explain's miss reasons).
FUNCTION_CHANGED = "function_changed"
GLOBAL_CHANGED = "global_changed"
ARGUMENT_CHANGED = "argument_changed"
NO_LONGER_USED = "no_longer_used"
MODULE_CHANGED = "module_changed"  # a module imported in the body, not loaded: extra = is new
PATCHED = "patched"  # a library attribute replaced: extra = newly replaced
UNPATCHED = "unpatched"  # a library attribute no longer replaced
FILE_CHANGED = "file_changed"
DEPENDENCY_CHANGED = "dependency_changed"  # env, probe, state: detail = item, extra = (old, new)
NEVER_COMPUTED = "never_computed"


class Reason:
    """One reason: `kind`, a `detail` (what), `where` (the user's line that
    caused it, "file.py:12", or None) and `extra` (kind-specific data)."""

    __slots__ = ("kind", "detail", "where", "extra")

    def __init__(self, kind: str, detail: str = "", where: str | None = None,
                 extra: Any = None) -> None:
        self.kind = kind
        self.detail = detail
        self.where = where
        self.extra = extra

    def __repr__(self) -> str:
        return f"Reason({self.kind!r}, {self.detail!r}, {self.where!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reason) and (self.kind, self.detail, self.where) == (
            other.kind, other.detail, other.where)

    def __hash__(self) -> int:
        return hash((self.kind, self.detail, self.where))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reason, (self.kind, self.detail, self.where, self.extra))

    def text(self) -> str:
        return _TEXT.get(self.kind, _unknown)(self) + (f" (at {self.where})" if self.where else "")


def _unknown(r: Reason) -> str:
    return f"{r.kind}: {r.detail}" if r.detail else r.kind


def _changed(r: Reason) -> str:
    if isinstance(r.extra, tuple) and len(r.extra) == 2:
        old, new = r.extra
        return f"{r.detail}: {old} → {new}"
    return f"{r.detail} changed"


_TEXT: dict[str, Callable[[Reason], str]] = {
    NONDETERMINISTIC: lambda r: f"reads {r.detail}, which differs on every run",
    SUBPROCESS: lambda r: f"runs a subprocess ({r.detail}) whose reads and writes bytecache "
                          "cannot see",
    WROTE: lambda r: f"writes {r.detail} (a hit would skip the write)",
    CHANGED_DURING_CALL: lambda r: f"{r.detail} changed while the call ran",
    MUTATED: lambda r: f"mutated {r.detail}",
    ALIASED: lambda r: f"its result {r.detail}; a stored copy would not be that object",
    EFFECT: lambda r: r.detail,
    UNPICKLABLE: lambda r: f"its result cannot be pickled ({r.detail})",
    TOO_LARGE: lambda r: f"its result ({r.detail} bytes) is larger than the cache's max_bytes "
                         "(BYTECACHE_MAX_BYTES)",
    UNHASHABLE: lambda r: r.detail,
    STORE_FAILED: lambda r: f"the cache could not store it ({r.detail})",
    CHEAP: lambda r: f"it took {r.detail} s, less than min_seconds",
    UNOBSERVED: lambda r: f"bytecache could not observe what it read ({r.detail})",
    FUNCTION_CHANGED: lambda r: f"function `{r.detail}`"
                                + (f" in {r.extra[0]}" if r.extra and r.extra[0] else "")
                                + (" is new" if r.extra and r.extra[1] else " changed"),
    GLOBAL_CHANGED: _changed,
    ARGUMENT_CHANGED: lambda r: f"argument `{r.detail}` changed",
    NO_LONGER_USED: lambda r: f"{r.detail} is no longer used",
    MODULE_CHANGED: lambda r: f"module `{r.detail}` (imported in the body, not loaded yet) "
                              + ("is new" if r.extra else "changed"),
    PATCHED: lambda r: f"library attribute `{r.detail}` "
                       + ("replaced" if r.extra else "replaced by something else"),
    UNPATCHED: lambda r: f"library attribute `{r.detail}` is no longer replaced",
    FILE_CHANGED: lambda r: r.detail,
    DEPENDENCY_CHANGED: _changed,
    NEVER_COMPUTED: lambda r: f"`{r.detail}` was never computed"
                              + (" with these arguments" if r.extra else ""),
}


def not_stored(reasons: list[Reason], name: str) -> str:
    """The warning text for a call whose result was not stored."""
    return f"`{name}` not cached: " + "; ".join(r.text() for r in reasons)
