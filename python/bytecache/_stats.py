"""`bytecache.stats()`: this process's counters and the store's size as a
dict, shown in a notebook as a table of the stored functions."""

from __future__ import annotations

import os

from bytecache import _core

# The table's modules (html costs ~5 ms: `re`) load when a notebook shows it.

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bytecache import _inventory

    _Dict = dict[str, Any]
else:
    _Dict = dict

# Rows shown in a notebook; the rest are summed up in one line.
_ROWS = 50


class Stats(_Dict):
    """This process's ``hits``, ``misses``, ``stored``, ``uncacheable`` and
    ``saved_seconds``; the store's ``cache_dir``, ``entries`` and ``bytes``
    (or ``error``). With a remote tier: its URL as ``remote`` (without a
    password), and ``remote_hits`` (entries fetched from it, included in
    ``hits``), ``remote_misses`` and ``remote_uploads``. A plain dict that
    renders as a table in a notebook."""

    def _repr_html_(self) -> str:
        import html

        from bytecache import _units

        e = html.escape
        head = (f"bytecache: {self.get('hits', 0)} hits, {self.get('misses', 0)} misses, "
                f"{_units.duration(self.get('saved_seconds', 0.0))} saved in this process")
        if "remote" in self:
            head += (f"; {self['remote_hits']} entries fetched from <code>"
                     f"{e(str(self['remote']))}</code>, {self['remote_uploads']} uploaded")
        place = f"{self.get('entries', 0)} entries, {_units.size(self.get('bytes', 0))} in " \
                f"<code>{e(str(self.get('cache_dir', '')))}</code>"
        if "error" in self:
            place += f" (cannot read it: {e(str(self['error']))})"
        funcs = _functions(str(self.get("cache_dir", "")))
        funcs.sort(key=lambda f: -f.saved_seconds)
        rows = "".join(
            f"<tr><td style='text-align:left'><code>{e(f.label)}</code></td>"
            f"<td>{len(f.entries)}</td><td>{f.hits}</td>"
            f"<td>{_units.duration(f.saved_seconds)}</td><td>{_units.size(f.size)}</td></tr>"
            for f in funcs[:_ROWS]
        )
        if len(funcs) > _ROWS:
            rest = funcs[_ROWS:]
            rows += (f"<tr><td style='text-align:left'>{len(rest)} more functions</td>"
                     f"<td>{sum(len(f.entries) for f in rest)}</td>"
                     f"<td>{sum(f.hits for f in rest)}</td>"
                     f"<td>{_units.duration(sum(f.saved_seconds for f in rest))}</td>"
                     f"<td>{_units.size(sum(f.size for f in rest))}</td></tr>")
        return (
            f"<div><p>{head}; {place}</p>"
            "<table><thead><tr><th style='text-align:left'>function</th><th>entries</th>"
            "<th>hits (all runs)</th><th>time saved (all runs)</th><th>size</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )


def _functions(directory: str) -> list[_inventory.Function]:
    from bytecache import _config, _inventory

    if not directory or not os.path.isdir(os.path.join(directory, "store")):
        return []
    try:
        return _inventory.functions(_config.local_store(directory))
    except Exception:  # noqa: BLE001 - a display must not raise; the dict says what failed
        return []


def stats(cache_dir: str | os.PathLike[str] | None = None) -> Stats:
    """This process's hits, misses and time saved, plus the store's size; in a
    notebook, a table of the stored functions (entries, hits, time saved, size)."""
    from bytecache import _config, _validate

    out = Stats(_core.stats(_validate.directory("cache_dir", cache_dir)))
    url = _config.remote_url()
    if url:
        from bytecache import _remote

        out.update(_remote.stats(url))
    return out
