"""Define once: re-executing an unchanged definition keeps the previous object."""

from __future__ import annotations

from conftest import Runner


def test_once_keeps_an_unchanged_definition_and_replaces_a_changed_one(runner: Runner) -> None:
    out = runner.out('''
import bytecache

SRC = """
import functools
@bytecache.once
@functools.lru_cache
def sq(x):
    return x * {k}
"""
ns = {"bytecache": bytecache}
exec(SRC.format(k="x"), ns)
first = ns["sq"]
first(3)
exec(SRC.format(k="x"), ns)           # re-running the same cell
print(ns["sq"] is first, ns["sq"].cache_info().currsize)
exec(SRC.format(k="x  # comment"), ns)  # a cosmetic edit is the same definition
print(ns["sq"] is first)
exec(SRC.format(k="(x + 1)"), ns)       # a real edit replaces it
print(ns["sq"] is first, ns["sq"](3))
''')
    assert out == ["True", "1", "True", "False", "12"]


def test_once_sees_values_captured_at_definition(runner: Runner) -> None:
    # Same text, but the default is evaluated when `def` runs: K changed, so
    # the old object would behave differently and is replaced.
    out = runner.out('''
import bytecache

ns = {"bytecache": bytecache, "K": 1}
SRC = "@bytecache.once\\ndef f(k=K):\\n    return k\\n"
exec(SRC, ns)
first = ns["f"]
exec(SRC, ns)
print(ns["f"] is first)
ns["K"] = 2
exec(SRC, ns)
print(ns["f"] is first, ns["f"]())
''')
    assert out == ["True", "False", "2"]


def test_once_compares_with_the_definition_as_it_was_made(runner: Runner) -> None:
    # The cache of the old object was filled while K was 1; after K changed,
    # re-running the unchanged text must not keep it (the old and the new
    # object read the same K *now*, so hashing both now would call them equal).
    out = runner.out('''
import bytecache

ns = {"bytecache": bytecache, "K": 1}
SRC = "import functools\\n@bytecache.once\\n@functools.lru_cache\\ndef f(x):\\n    return x * K\\n"
exec(SRC, ns)
first = ns["f"]
print(first(2))
ns["K"] = 2
exec(SRC, ns)
print(ns["f"] is first, ns["f"](2))
second = ns["f"]
exec(SRC, ns)
print(ns["f"] is second)
''')
    assert out == ["2", "False", "4", "True"]
