"""Define once under `%load_ext bytecache`, in a real IPython shell
(`InteractiveShell` in a fresh process): re-running a cell with an unchanged
stateful definition keeps its state, also for calls in the same cell; any
change to the definition replaces it."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import Runner

pytest.importorskip("IPython")

SHELL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell

ip = InteractiveShell.instance()
cells = json.load(open("cells.json"))
for cell in cells:
    result = ip.run_cell(cell)
    if not result.success:
        print("FAILED", repr(result.error_before_exec or result.error_in_exec))
"""

LRU = """@functools.lru_cache(maxsize=N)
def sq(x):
    return x * K
print(sq(3), sq.cache_info().hits, sq.cache_info().maxsize)"""


def _shell(runner: Runner, cells: list[str]) -> list[str]:
    runner.write("cells.json", json.dumps(["%load_ext bytecache", *cells]))
    proc = runner.run(SHELL)
    assert "FAILED" not in proc.stdout and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout.strip().split("\n")


def test_lru_cache_survives_rerunning_its_cell(runner: Runner) -> None:
    out = _shell(runner, [
        "import functools\nN, K = 8, 3",
        LRU,                                   # 9 0 8: computed
        LRU,                                   # the same cell again: kept, the call hits
        "# a comment\n" + LRU.replace("return x * K", "return x * K  # same"),
        "kept = sq",
        LRU.replace("x * K", "x * K + 1"),    # the body changed: replaced
        "print(sq is kept)",
        "N = 16",
        LRU.replace("x * K", "x * K + 1"),    # the decorator's argument changed: replaced
        "K = 4",
        LRU.replace("x * K", "x * K + 1"),    # a global the body reads changed: replaced
        LRU.replace("x * K", "x * K + 1"),    # then unchanged again: kept
    ])
    assert out == ["9 0 8", "9 1 8", "9 2 8", "10 0 8", "False", "10 0 16", "13 0 16",
                   "13 1 16"]


def test_only_objects_with_state_are_kept(runner: Runner) -> None:
    out = _shell(runner, [
        "def plain(x):\n    return x\nfirst = plain",
        "def plain(x):\n    return x\nprint(plain is first)",
        "import functools\n"
        "def tag(f):\n    f.tagged = True\n    return f",
        "@tag\ndef tagged(x):\n    return x\nfirst = tagged",
        "@tag\ndef tagged(x):\n    return x\nprint(tagged is first)",
        "import functools\n"
        "def memo(f):\n    seen = {}\n"
        "    @functools.wraps(f)\n    def wrapper(x):\n"
        "        if x not in seen:\n            seen[x] = f(x)\n        return seen[x]\n"
        "    wrapper.seen = seen\n    return wrapper",
        "@memo\ndef m(x):\n    return x + 1\nm(1)\nprint(len(m.seen))",
        "@memo\ndef m(x):\n    return x + 1\nprint(len(m.seen))",
    ])
    # A plain function (also one a decorator returned unchanged) is simply
    # replaced; a wrapper holding state in its closure is kept.
    assert out == ["False", "False", "1", "1"]


def test_rebound_names_and_unhashable_definitions_are_replaced(runner: Runner) -> None:
    out = _shell(runner, [
        "import functools, threading\nLOCK = threading.Lock()",
        LRU.replace("(maxsize=N)", "").replace("x * K", "x * 2"),
        "sq = functools.lru_cache(lambda x: x)",   # the name now holds something else
        LRU.replace("(maxsize=N)", "").replace("x * K", "x * 2"),
        "@functools.lru_cache\ndef locked(x):\n    with LOCK:\n        return x\n"
        "print(locked(1), locked.cache_info().hits)",
        "@functools.lru_cache\ndef locked(x):\n    with LOCK:\n        return x\n"
        "print(locked(1), locked.cache_info().hits)",
    ])
    # The lock cannot be hashed by content: the definition is never kept
    # (and nothing warns: re-creating it is what Python does anyway).
    assert out == ["6 0 128", "6 0 128", "1 0", "1 0"]


def test_define_once_survives_reset(runner: Runner) -> None:
    lru = LRU.replace("(maxsize=N)", "").replace("x * K", "x * 2")
    out = _shell(runner, ["%reset -f", "import functools", lru, lru, "%reset -f",
                          "import functools", lru])
    assert out == ["6 0 128", "6 1 128", "6 0 128"]


@pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                    reason="numba is not installed for this interpreter")
def test_numba_jit_keeps_its_compiled_code(runner: Runner) -> None:
    jit = ("@numba.jit(nopython=True)\ndef total(n):\n    s = {start}\n"
           "    for i in range(n):\n        s += i\n    return s\n"
           "print(total(10), len(total.signatures), total is FIRST[0])")
    out = _shell(runner, [
        "import numba\nFIRST = [None]",
        jit.format(start=0) + "\nFIRST[0] = total",
        jit.format(start=0),
        jit.format(start=1),
    ])
    assert out == ["45 1 False", "45 1 True", "46 1 False"]
