"""bytecache.explain says hit, or miss and exactly why."""

from __future__ import annotations

from conftest import Runner

PREP = """
def clean(rows):
    return [r * {k} for r in rows]
"""

MAIN = """
import bytecache
from prep import clean

K = {K}

@bytecache.memoize
def pipeline(rows, scale=1):
    return sum(clean(rows)) * K * scale + len(open("data.csv").read())

{call}
"""


def _setup(runner: Runner) -> None:
    runner.write("prep.py", PREP.format(k=2))
    runner.write("data.csv", "a,b\n1,2\n")
    runner.run(MAIN.format(K=10, call="pipeline([1, 2, 3])"))


def _explain(runner: Runner, k: int = 10, args: str = "[1, 2, 3]") -> str:
    out = runner.run(MAIN.format(K=k, call=f"print(bytecache.explain(pipeline, {args}))"))
    return out.stdout.strip()


def test_hit(runner: Runner) -> None:
    _setup(runner)
    assert _explain(runner) == "hit"


def test_global_changed_shows_old_and_new_value(runner: Runner) -> None:
    _setup(runner)
    assert _explain(runner, k=11) == "miss: global `K`: 10 → 11"


def test_callee_in_another_module_changed(runner: Runner) -> None:
    _setup(runner)
    runner.write("prep.py", PREP.format(k=3))
    assert _explain(runner) == "miss: function `prep.clean` in prep.py changed"


def test_argument_changed(runner: Runner) -> None:
    _setup(runner)
    assert _explain(runner, args="[1, 2, 4]") == "miss: argument `rows` changed"


def test_data_file_changed(runner: Runner) -> None:
    _setup(runner)
    runner.write("data.csv", "a,b\n1,3\n")
    assert _explain(runner) == "miss: file data.csv changed"


def test_open_file_argument_is_not_memoized(runner: Runner) -> None:
    _setup(runner)
    assert _explain(runner, args="open('data.csv')") == (
        "not memoized: argument `rows` is an open file"
    )


def test_never_computed(runner: Runner) -> None:
    runner.write("prep.py", PREP.format(k=2))
    runner.write("data.csv", "x")
    runner.cache.mkdir(mode=0o700)
    out = runner.run(MAIN.format(K=1, call="print(bytecache.explain(pipeline, [1]))")).stdout
    assert out.strip() == "miss: `pipeline` was never computed"


def test_explain_a_decorator_free_function(runner: Runner) -> None:
    script = """
import bytecache
bytecache.enable(min_seconds=0)
K = {K}

def f(x):
    return x * K

{call}
"""
    runner.run(script.format(K=1, call="f(2)"))
    assert runner.out(script.format(K=1, call="print(bytecache.explain(f, 2))")) == ["hit"]
    out = runner.run(script.format(K=2, call="print(bytecache.explain(f, 2))")).stdout
    assert out.strip() == "miss: global `K`: 1 → 2"


def test_explain_follows_state_the_fingerprint_implies(runner: Runner) -> None:
    # A function reaching numpy depends on numpy's print options and error
    # state: stored under them, found by explain as by a call.
    import pytest

    pytest.importorskip("numpy")
    script = """
import numpy as np
import bytecache

@bytecache.memoize
def f(n):
    return str(np.arange(n) / 3)

print(bytecache.explain(f, 3))
f(3)
print(bytecache.explain(f, 3))
"""
    assert runner.run(script).stdout.split("\n")[:2] == ["miss: nothing is stored yet", "hit"]


def test_not_memoized_functions_say_so(runner: Runner) -> None:
    out = runner.run("""
import bytecache

def plain(x):
    return x

print(bytecache.explain(len, [1]))
print(bytecache.explain(plain, 1))
""").stdout.splitlines()
    assert out[0].startswith("not memoized: `len` is neither decorated")
    assert out[1].startswith("not memoized: `plain` is neither decorated")


def test_explain_is_honest_when_bytecache_is_off(runner: Runner) -> None:
    _setup(runner)
    out = runner.run(MAIN.format(K=10, call="print(bytecache.explain(pipeline, [1, 2, 3]))"),
                     BYTECACHE="off").stdout.strip()
    assert out == "not memoized: bytecache is off (BYTECACHE=off in the environment)"
    out = runner.run(MAIN.format(K=10, call="""
with bytecache.disabled():
    print(bytecache.explain(pipeline, [1, 2, 3]))
print(bytecache.explain(pipeline, [1, 2, 3]))
""")).stdout.split("\n")
    assert out[:2] == ["not memoized: inside `bytecache.disabled()`", "hit"]


def test_compares_with_the_entry_this_call_would_have_matched(runner: Runner) -> None:
    # Two argument sets are stored; then K changes. The latest entry is the
    # other argument set: comparing with it blamed "argument `rows`". The
    # closest one says what really changed.
    _setup(runner)
    runner.run(MAIN.format(K=10, call="pipeline([7, 8, 9])"))
    assert _explain(runner, k=12) == "miss: global `K`: 10 → 12"


def test_explain_says_why_a_call_was_not_stored(runner: Runner) -> None:
    # Kept with the entry's key in the store: a new process can tell too.
    script = """
import time
import bytecache

@bytecache.memoize
def stamp(n):
    return (n, time.time())

{call}
"""
    runner.run(script.format(call="stamp(1)"))
    out = runner.run(script.format(call="print(bytecache.explain(stamp, 1))")).stdout.strip()
    assert out.startswith("miss: not stored last time: reads time.time, which differs on every run")
