"""What a store holds, per function: its entries grouped by the memoized
function they belong to, each function named ``module.qualname``.

An entry's group is a hash of ``(module, qualname)``; the name comes from the
entry's dependency record (its first ``function`` item is the memoized
function) and is accepted only when it hashes to the group. Used by the
command line and by ``stats()``'s table.
"""

from __future__ import annotations

from bytecache import _bytecache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from bytecache._bytecache import EntryInfo, Store


class Function:
    """One memoized function's stored entries."""

    __slots__ = ("group", "module", "qualname", "entries")

    def __init__(self, group: str, name: tuple[str, str] | None,
                 entries: list[EntryInfo]) -> None:
        self.group = group
        self.module: str | None = name[0] if name is not None else None
        self.qualname: str | None = name[1] if name is not None else None
        self.entries = entries

    @property
    def name(self) -> str | None:
        """``module.qualname``, or None when no record names it."""
        return None if self.qualname is None else f"{self.module}.{self.qualname}"

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"<unnamed {self.group[:12]}>"

    @property
    def size(self) -> int:
        return sum(e["size"] for e in self.entries)

    @property
    def hits(self) -> int:
        return sum(e["hits"] for e in self.entries)

    @property
    def saved_seconds(self) -> float:
        """Compute time that hits (in every process, since each entry was stored) did not spend."""
        return sum(e["hits"] * e["compute_seconds"] for e in self.entries)


def _split(name: str, group: bytes) -> tuple[str, str] | None:
    """`name` as ``(module, qualname)`` when it names the function whose group
    is `group` (both parts may contain dots: every split is tried)."""
    for i, c in enumerate(name):
        if c == "." and _bytecache.hash_value((name[:i], name[i + 1 :])) == group:
            return name[:i], name[i + 1 :]
    return None


def _name(store: Store, group: str, entries: list[EntryInfo]) -> tuple[str, str] | None:
    for entry in entries[:3]:
        try:
            record = store.record(bytes.fromhex(entry["key"]))
        except (_bytecache.BytecacheError, ValueError):
            continue
        for kind, name, _display, _digest in record or ():
            if kind == "function":
                split = _split(name, bytes.fromhex(group))
                if split is not None:
                    return split
                break
    return None


def functions(store: Store) -> list[Function]:
    """Every function with stored entries, the most recently used first."""
    groups: dict[str, list[EntryInfo]] = {}
    for entry in sorted(store.entries(), key=lambda e: -e["last_used"]):
        groups.setdefault(entry["group"], []).append(entry)
    return [Function(group, _name(store, group, entries), entries)
            for group, entries in groups.items()]


class NoMatch(LookupError):
    """A name or id that matches nothing, or more than one thing."""


def select(funcs: list[Function], target: str) -> tuple[list[Function], EntryInfo | None]:
    """What `target` names: a function (``module.qualname``, or its qualname
    when that is unambiguous), an entry (its id or an id prefix, as ``ls``
    shows) or a group (a hex prefix of it). Returns the functions, and the one
    entry when `target` names an entry. Raises NoMatch."""
    by_name = [f for f in funcs if f.name == target]
    if not by_name:
        by_name = [f for f in funcs if f.qualname == target]
    if len(by_name) > 1:
        raise NoMatch(f"{target!r} names several functions: "
                      + ", ".join(sorted(f.label for f in by_name)))
    if by_name:
        return by_name, None
    hex_target = target.lower()
    if len(hex_target) >= 4 and all(c in "0123456789abcdef" for c in hex_target):
        hits = [(f, e) for f in funcs for e in f.entries if e["key"].startswith(hex_target)]
        if len(hits) == 1:
            return [hits[0][0]], hits[0][1]
        if len(hits) > 1:
            raise NoMatch(f"id {target!r} matches {len(hits)} entries; give more digits")
        groups = [f for f in funcs if f.group.startswith(hex_target)]
        if len(groups) == 1:
            return groups, None
        if len(groups) > 1:
            raise NoMatch(f"id {target!r} matches {len(groups)} functions; give more digits")
    raise NoMatch(f"no stored function or entry matches {target!r} "
                  "(see `python -m bytecache ls`)")

