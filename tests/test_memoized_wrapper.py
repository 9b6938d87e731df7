"""The decorator's wrapper (`bytecache._bytecache.Memoized`): calls bound and
keyed in Rust behave like calls of the function itself. Real interpreters."""

from __future__ import annotations

from conftest import Runner


def test_keyword_calls_are_answered_from_kept_results(runner: Runner) -> None:
    # Every spelling of the same call is one entry, and after the first the
    # rest are answered in process (the wrapper's fast path), not by `begin`.
    out = runner.run("""
import bytecache

@bytecache.memoize
def g(a, b, c=3, *rest, d, **more):
    ran()
    return (a, b, c, rest, d, tuple(sorted(more.items())))

print(g(1, 2, d=4))
print(g(1, b=2, d=4), g(a=1, b=2, c=3, d=4), g(d=4, b=2, a=1))
print(g(1, 2, 3, 9, d=4, e=5), g(1, 2, 3, 9, e=5, d=4))
print(g.__bytecache_target__.memo.fast_hits[0])
""").stdout.splitlines()
    assert out == [
        "RAN", "(1, 2, 3, (), 4, ())",
        "(1, 2, 3, (), 4, ()) (1, 2, 3, (), 4, ()) (1, 2, 3, (), 4, ())",
        "RAN", "(1, 2, 3, (9,), 4, (('e', 5),)) (1, 2, 3, (9,), 4, (('e', 5),))",
        "4",
    ]


def test_wrong_arguments_raise_the_functions_own_error(runner: Runner) -> None:
    out = runner.run("""
import bytecache

def plain(a, b=1, *, c):
    return a

@bytecache.memoize
def f(a, b=1, *, c):
    ran()
    return a

for args, kwargs in [((), {"c": 1}), ((1, 2, 3), {"c": 1}), ((1,), {"a": 1, "c": 1}),
                     ((1,), {}), ((1,), {"c": 1, "z": 2})]:
    errors = []
    for fn in (plain, f):
        try:
            fn(*args, **kwargs)
        except TypeError as e:
            errors.append(str(e).replace("plain", "NAME").replace("f()", "NAME()"))
    print(len(errors) == 2 and errors[0] == errors[1], errors[0])
print(f(1, c=1), f.cache_info()["misses"])
""").stdout.splitlines()
    assert all(line.startswith("True ") for line in out[:5]), out
    assert out[5:] == ["RAN", "1 1"]


def test_the_wrapper_stands_for_the_function(runner: Runner) -> None:
    out = runner.run("""
import bytecache, inspect, pickle, sys

def area(w: float, h: float = 1.0) -> float:
    '''The area.'''
    return w * h

raw = area
m = bytecache.memoize(area)
sys.modules[__name__].area = m  # what `@memoize` does to the module's name
print(type(m).__name__, m.__wrapped__ is raw, m.__name__, m.__qualname__, m.__doc__)
print(m.__module__ == raw.__module__, m.__annotations__ == raw.__annotations__)
print(inspect.signature(m) == inspect.signature(raw), callable(m))
print(pickle.loads(pickle.dumps(m)) is m)
print(m(2.0, h=3.0), m(2.0, 3.0), m.cache_info()["hits"])

class Box:
    def __init__(self, k):
        self.k = k

    @bytecache.memoize
    def scaled(self, x):
        return x * self.k

b = Box(3)
print(b.scaled(2), Box.scaled(b, 2), b.scaled.__self__ is b, b.scaled.cache_info()["hits"])
print(pickle.loads(pickle.dumps(Box.scaled)) is Box.__dict__["scaled"])
""").stdout.splitlines()
    assert out == [
        "Memoized True area area The area.",
        "True True",
        "True True",
        "True",
        "6.0 6.0 1",
        "6 6 True 1",
        "True",
    ]


def test_decorating_and_calling_do_not_import_inspect(runner: Runner) -> None:
    # `inspect.Signature` is never on a call's path (nor importing inspect,
    # which costs milliseconds).
    out = runner.run("""
import sys, bytecache

@bytecache.memoize
def f(a, *, b=2):
    return a + b

print(f(1, b=3), f(1, b=3), "inspect" in sys.modules)
""").stdout.splitlines()
    assert out == ["4 4 False"]


def test_only_python_functions_are_memoized(runner: Runner) -> None:
    # Something that merely looks like one (a `__code__`, callable) is
    # refused at decoration: its calls could not be bound like a frame's.
    out = runner.run("""
import bytecache

def f(x):
    return x

class Lookalike:
    __code__ = f.__code__
    def __call__(self, x):
        return x

for thing in (Lookalike(), len, 3):
    try:
        bytecache.memoize(thing)
    except TypeError as e:
        print(e)
""").stdout.splitlines()
    assert out == [f"bytecache.memoize needs a Python function, not {t}"
                   for t in ("Lookalike", "builtin_function_or_method", "int")]
