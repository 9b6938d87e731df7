"""Keying never breaks the call: whatever an argument or a global is, the
call either gets a key or runs normally with one BytecacheWarning. Nothing
raises into the user's call, nothing crashes the interpreter. Unhashable
outcomes are data: `UnhashableError.kind`, `.detail` and `.location`."""

from __future__ import annotations

import pytest

from conftest import Runner

CALL = """
import bytecache

@bytecache.memoize
def use(a):
    ran()
    return {body}

{setup}
print(use({arg}))
"""


def call(setup: str, arg: str, body: str = "1") -> str:
    return CALL.format(setup=setup, arg=arg, body=body)


def test_mocks_as_arguments_do_not_crash(runner: Runner) -> None:
    # `mock.call(1).__wrapped__` is another `_Call`, forever: probing it
    # recursed in Rust until the stack overflowed.
    script = call("from unittest import mock\nm = mock.MagicMock()\nm(1)",
                  "(mock.call(1), m)", body="len(a)")
    proc = runner.run(script)
    assert proc.stdout.split() == ["RAN", "2"], proc.stderr
    assert "BytecacheWarning" not in proc.stderr
    assert runner.out(script) == ["2"]


DEEP = """
import threading, bytecache

@bytecache.memoize
def use(a):
    ran()
    return 1

deep = []
x = deep
for _ in range(100_000):
    x.append([])
    x = x[0]

out = []
threading.stack_size(256 * 1024)
t = threading.Thread(target=lambda: out.append(use(deep)))
t.start()
t.join()
print(out, use(deep))
"""


def test_deep_values_in_a_small_stack_thread_run_normally(runner: Runner) -> None:
    proc = runner.run(DEEP)
    assert proc.stdout.split() == ["RAN", "RAN", "[1]", "1"], proc.stderr
    assert proc.stderr.count("BytecacheWarning") == 1, proc.stderr
    assert "nested too deeply" in proc.stderr


@pytest.mark.parametrize("arg", ["2**63", "-(2**63) - 1", "2**200", "-(2**200)", "Big(2**70)"])
def test_big_ints_are_ordinary_values(runner: Runner, arg: str) -> None:
    script = call("class Big(int):\n    pass", arg, body="a + 1")
    first = runner.run(script)
    assert first.stdout.split()[0] == "RAN"
    assert "BytecacheWarning" not in first.stderr, first.stderr
    assert runner.out(script) == first.stdout.split()[1:]
    other = runner.out(call("class Big(int):\n    pass", f"({arg}) + 1", body="a + 1"))
    assert other[0] == "RAN"


def test_getattr_raising_key_error_does_not_escape(runner: Runner) -> None:
    setup = "class Lazy:\n    def __getattr__(self, name):\n        raise KeyError(name)"
    script = call(setup, "Lazy()")
    proc = runner.run(script)
    assert proc.stdout.split() == ["RAN", "1"] and "BytecacheWarning" not in proc.stderr
    assert runner.out(script) == ["1"]


def test_an_exception_while_hashing_is_one_warning(runner: Runner) -> None:
    setup = ("class Odd(Exception):\n    def __reduce__(self):\n"
             "        raise KeyError('no state')")
    proc = runner.run(call(setup, "Odd('x')"))
    assert proc.stdout.split() == ["RAN", "1"]
    assert proc.stderr.count("BytecacheWarning") == 1
    assert "KeyError" in proc.stderr


REGEX = """
import re, bytecache
WORD = re.compile({pattern!r})

@bytecache.memoize
def words(text):
    ran()
    return WORD.findall(text)

print(words("a bb ccc"))
"""


def test_a_compiled_regex_global_is_memoized_and_keyed_by_pattern(runner: Runner) -> None:
    first = runner.run(REGEX.format(pattern=r"\w+"))
    assert "BytecacheWarning" not in first.stderr, first.stderr
    assert runner.out(REGEX.format(pattern=r"\w+")) == ["['a',", "'bb',", "'ccc']"]
    assert runner.out(REGEX.format(pattern=r"\w\w+")) == ["RAN", "['bb',", "'ccc']"]


CURRY = """
import bytecache, toolz

@toolz.curry
def scale(k, x):
    return x * k + {k}

@bytecache.memoize
def apply(f, x):
    ran()
    return f(x)

print(apply(scale(2), 5))
"""


def test_a_curried_function_is_keyed_by_what_it_holds(runner: Runner) -> None:
    # toolz.curry pickles a decorated function by name: keyed that way, an
    # edit of the function would hit the old result.
    pytest.importorskip("toolz")
    assert runner.out(CURRY.format(k=1)) == ["RAN", "11"]
    assert runner.out(CURRY.format(k=1)) == ["11"]
    assert runner.out(CURRY.format(k=3)) == ["RAN", "13"]


ERRORS = """
import threading
from bytecache import _bytecache

class Holder:
    def __init__(self, files):
        self.files = files

LOCK = threading.Lock()

def reads_lock(x):
    return LOCK.locked()

def writes(x):
    global N
    N = x

def show(func, arguments):
    try:
        _bytecache.call_key(func, arguments, [])
    except _bytecache.UnhashableError as e:
        print(repr((e.kind, e.detail, e.location, str(e))))

show(lambda cfg: cfg, {{"cfg": Holder({{"log": open({path!r})}})}})
show(reads_lock, {{"x": 1}})
show(writes, {{"x": 1}})
show(lambda xs: xs, {{"xs": [1, (x for x in [])]}})
"""


def test_unhashable_errors_carry_kind_and_location(runner: Runner) -> None:
    data = runner.write("data.txt", "x")
    lines = runner.run(ERRORS.format(path=str(data))).stdout.splitlines()
    got = [eval(line) for line in lines]  # noqa: S307 - our own reprs
    assert [g[:3] for g in got] == [
        ("open_file", "_io.TextIOWrapper",
         (("argument", "cfg"), ("attribute", "files"), ("key", "'log'"))),
        ("lock", "_thread.lock", (("function", "reads_lock"), ("global", "LOCK"))),
        ("assigns_global", "", (("function", "writes"),)),
        ("generator", "generator", (("argument", "xs"), ("item", "1"))),
    ]
    assert got[0][3] == ("argument `cfg` → attribute `files` → key 'log': "
                         "_io.TextIOWrapper is an open file")
    assert got[1][3] == "global `LOCK` of `reads_lock`: _thread.lock is a lock"
