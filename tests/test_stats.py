"""`bytecache.stats()`: still a dict, and a table of the stored functions in a
notebook (IPython's display formatter picks `_repr_html_`)."""

from __future__ import annotations

import json

import pytest

from conftest import Runner

pytest.importorskip("IPython")

SCRIPT = """
import json, time
import bytecache

@bytecache.memoize
def slow(n):
    time.sleep(0.05)
    return n

@bytecache.memoize
def other(s):
    return s * 2

print(slow(1), slow(2), other("<b>"))
from IPython.core.interactiveshell import InteractiveShell
shown, _ = InteractiveShell.instance().display_formatter.format(bytecache.stats())
s = bytecache.stats()
print(json.dumps({"keys": sorted(s), "is_dict": isinstance(s, dict), "html": shown["text/html"]}))
"""


def _report(runner: Runner) -> dict:
    return json.loads(runner.run(SCRIPT).stdout.split("\n")[-2])


def test_stats_is_a_dict_and_a_table_of_functions(runner: Runner) -> None:
    _report(runner)
    report = _report(runner)  # a new process: each entry is hit once
    assert report["is_dict"]
    assert report["keys"] == ["bytes", "cache_dir", "entries", "hits", "misses",
                              "saved_seconds", "stored", "uncacheable"]
    page = report["html"]
    assert "<table>" in page and "3 hits, 0 misses" in page
    rows = page.split("<tbody>")[1].split("</tr>")[:-1]
    # Most time saved first; the names are escaped; entries, hits, saved, size.
    assert rows[0].startswith("<tr><td style='text-align:left'><code>__main__.slow</code>")
    cells = [c.split(">", 1)[1] for c in rows[0].split("</td>")[1:-1]]
    assert cells[:2] == ["2", "2"] and cells[2].endswith(" s") and cells[3].endswith(" B")
    assert "__main__.other" in rows[1]


def test_stats_of_a_missing_cache_creates_nothing(runner: Runner) -> None:
    out = runner.out("import bytecache; print(sorted(bytecache.stats()))")
    assert "'entries'," not in " ".join(out)
    assert not runner.cache.exists()
